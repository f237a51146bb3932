#include "agent/window_counters.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "agent/thread_slot.h"
#include "common/latency_buckets.h"
#include "common/monitored_feature.h"
#include "common/prediction.h"
#include "common/telemetry_window.h"

namespace edgeloop::agent {
namespace {

constexpr size_t kRequests = 0, kErrors = 1, kLateLabels = 2, kFixedCells = 3;

int64_t Elements(const elm_tensor& t) {
  int64_t n = 1;
  for (int32_t d = 0; d < t.rank; ++d) n *= t.dims[d];
  return n;
}

uint64_t NextId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

int64_t FloorTo(int64_t ms, int64_t step) { return ms - ((ms % step) + step) % step; }

}  // namespace

WindowCounters::WindowCounters(const v1::MonitoringSpec& spec, std::string module_digest,
                               const elm_module& module, absl::Time now)
    : id_(NextId()),
      spec_(spec),
      digest_(std::move(module_digest)),
      window_(absl::Seconds(std::max<int64_t>(1, spec.window_seconds()))),
      sample_values_(spec.sample_values()) {
  size_t cell = kFixedCells;
  latency_at_ = cell;
  cell += kLatencyBuckets;
  for (const v1::MonitoringSpec::Feature& f : spec.features()) {
    Feature feature;
    feature.def = f.feature();
    for (uint32_t k = 0; k < module.num_inputs; ++k) {
      if (f.feature().input() == module.inputs[k].name && module.inputs[k].dtype == ELM_F32) {
        feature.input = static_cast<int>(k);
        feature.shape.assign(module.inputs[k].dims, module.inputs[k].dims + module.inputs[k].rank);
      }
    }
    if (feature.input < 0) continue;
    feature.edges_at = static_cast<int>(edges_.size());
    feature.edges = f.edges_size();
    edges_.insert(edges_.end(), f.edges().begin(), f.edges().end());
    feature.bins_at = cell;
    if (feature.edges > 0) cell += feature.edges + 1;
    feature.sampled_at = features_.size();
    feature.samples_at = sample_slots_;
    sample_slots_ += sample_values_;
    features_.push_back(std::move(feature));
  }
  if (module.num_outputs > 0 && module.outputs[0].dtype == ELM_F32) {
    const elm_tensor& out = module.outputs[0];
    output_elements_ = Elements(out);
    if (IsClassifierOutput(std::vector<int64_t>(out.dims, out.dims + out.rank)) &&
        output_elements_ <= kMaxClasses) {
      classes_ = output_elements_;
    }
  }
  if (classes_ > 0) {
    classes_at_ = cell;
    cell += classes_;
    confidence_at_ = cell;
    cell += kConfidenceBins;
    labelled_at_ = cell;
    cell += classes_;
    correct_at_ = cell;
    cell += classes_;
    predicted_labelled_at_ = cell;
    cell += classes_;
  } else if (spec.prediction_edges_size() > 0 && output_elements_ > 0) {
    prediction_edges_at_ = static_cast<int>(edges_.size());
    prediction_edges_ = spec.prediction_edges_size();
    edges_.insert(edges_.end(), spec.prediction_edges().begin(), spec.prediction_edges().end());
    predictions_at_ = cell;
    cell += prediction_edges_ + 1;
  }
  cells_ = cell;
  totals_.assign(cells_, 0);
  shards_.resize(static_cast<size_t>(ThreadSlots()) + 1);
  for (Shard& shard : shards_) {
    // Padded by a cache line, so that no line holds two threads' counters.
    shard.cells = std::make_unique<std::atomic<int64_t>[]>(cells_ + 8);
    for (size_t k = 0; k < cells_; ++k) shard.cells[k].store(0, std::memory_order_relaxed);
    shard.sampled = std::make_unique<std::atomic<int64_t>[]>(std::max<size_t>(features_.size(), 1));
    for (size_t k = 0; k < features_.size(); ++k) shard.sampled[k].store(0);
    shard.samples = std::make_unique<std::atomic<float>[]>(std::max<size_t>(sample_slots_, 1));
  }
  const int64_t step = absl::ToInt64Milliseconds(window_);
  window_start_ms_ = FloorTo(absl::ToUnixMillis(now), step);
}

int64_t WindowCounters::Record(const void* const* inputs, const void* const* outputs,
                               absl::Duration run, bool ok) noexcept {
  const int slot = ThreadSlot();
  Shard& shard = shards_[static_cast<size_t>(slot)];
  const bool exclusive = slot < ThreadSlots();
  auto add = [&](size_t cell) { Bump(shard.cells[cell], exclusive); };
  add(kRequests);
  add(latency_at_ + LatencyBucket(absl::ToDoubleMicroseconds(run)));
  if (!ok) {
    add(kErrors);
    return -1;
  }
  for (const Feature& f : features_) {
    const double value = FeatureValue(f.def, static_cast<const float*>(inputs[f.input]), f.shape);
    if (f.edges > 0) {
      const int bin = BinOf(edges_.data() + f.edges_at, f.edges, value);
      if (bin >= 0) add(f.bins_at + static_cast<size_t>(bin));
    } else if (sample_values_ > 0 && !std::isnan(value)) {
      // The first values of the window on this shard (not a reservoir: no random draw on
      // the request path). A slot written as Close takes the window may carry a value of
      // this window into the next one's samples.
      const int64_t n = shard.sampled[f.sampled_at].fetch_add(1, std::memory_order_relaxed);
      if (n < sample_values_) {
        shard.samples[f.samples_at + static_cast<size_t>(n)].store(static_cast<float>(value),
                                                                   std::memory_order_relaxed);
      }
    }
  }
  if (output_elements_ == 0) return -1;
  const float* out = static_cast<const float*>(outputs[0]);
  if (classes_ > 0) {
    const TopClass top = TopClassOf(out, classes_);
    if (top.index < 0) return -1;
    add(classes_at_ + static_cast<size_t>(top.index));
    add(confidence_at_ + static_cast<size_t>(ConfidenceBin(top.probability)));
    return top.index;
  }
  if (prediction_edges_ > 0) {
    const int bin = BinOf(edges_.data() + prediction_edges_at_, prediction_edges_,
                          PredictionValue(out, output_elements_));
    if (bin >= 0) add(predictions_at_ + static_cast<size_t>(bin));
  }
  return -1;
}

void WindowCounters::RecordLabel(int64_t predicted, int64_t label) noexcept {
  if (classes_ == 0 || label < 0 || label >= classes_) return;
  const int slot = ThreadSlot();
  Shard& shard = shards_[static_cast<size_t>(slot)];
  const bool exclusive = slot < ThreadSlots();
  Bump(shard.cells[labelled_at_ + static_cast<size_t>(label)], exclusive);
  if (predicted == label) Bump(shard.cells[correct_at_ + static_cast<size_t>(label)], exclusive);
  if (predicted >= 0 && predicted < classes_) {
    Bump(shard.cells[predicted_labelled_at_ + static_cast<size_t>(predicted)], exclusive);
  }
}

void WindowCounters::RecordLateLabel() noexcept {
  const int slot = ThreadSlot();
  Bump(shards_[static_cast<size_t>(slot)].cells[kLateLabels], slot < ThreadSlots());
}

void WindowCounters::RecordShadow(int64_t version, const std::string& digest, bool ok,
                                  bool agreed, absl::Duration run) {
  std::lock_guard lock(shadow_mu_);
  v1::TelemetryWindow::Shadow& s = shadows_[version];
  if (s.latency_counts_size() == 0) {
    s.set_version(version);
    s.mutable_latency_counts()->Resize(static_cast<int>(kLatencyBuckets), 0);
  }
  if (s.module_digest().empty()) s.set_module_digest(digest);
  s.set_requests(s.requests() + 1);
  if (!ok) s.set_errors(s.errors() + 1);
  if (ok && agreed) s.set_agreed(s.agreed() + 1);
  const int bucket = static_cast<int>(LatencyBucket(absl::ToDoubleMicroseconds(run)));
  s.set_latency_counts(bucket, s.latency_counts(bucket) + 1);
}

void WindowCounters::RecordShadowSkipped(int64_t version) noexcept {
  skipped_version_.store(version, std::memory_order_relaxed);
  shadow_skipped_.fetch_add(1, std::memory_order_relaxed);
}

absl::Time WindowCounters::window_end() const {
  return absl::FromUnixMillis(window_start_ms_.load()) + window_;
}

std::vector<int64_t> WindowCounters::Take(size_t at, size_t n) {
  std::vector<int64_t> sums(n, 0);
  for (Shard& shard : shards_) {
    for (size_t k = 0; k < n; ++k) sums[k] += shard.cells[at + k].load(std::memory_order_relaxed);
  }
  // Counters only grow: the window's counts are what they grew by since the last close.
  for (size_t k = 0; k < n; ++k) {
    const int64_t total = sums[k];
    sums[k] = total - totals_[at + k];
    totals_[at + k] = total;
    taken_any_ = taken_any_ || sums[k] != 0;
  }
  return sums;
}

std::optional<v1::TelemetryWindow> WindowCounters::CloseIfDue(absl::Time now) {
  const int64_t start = window_start_ms_.load();
  const int64_t step = absl::ToInt64Milliseconds(window_);
  if (absl::ToUnixMillis(now) < start + step) return std::nullopt;
  taken_any_ = false;
  v1::TelemetryWindow w;
  w.set_id(TelemetryWindowId(spec_.model(), spec_.version(), start));
  w.set_model(spec_.model());
  w.set_version(spec_.version());
  w.set_module_digest(digest_);
  w.set_start_ms(start);
  w.set_end_ms(start + step);
  const std::vector<int64_t> fixed = Take(0, kFixedCells);
  w.set_requests(fixed[kRequests]);
  w.set_errors(fixed[kErrors]);
  w.set_late_labels(fixed[kLateLabels]);
  for (const int64_t c : Take(latency_at_, kLatencyBuckets)) w.add_latency_counts(c);
  for (const Feature& f : features_) {
    v1::TelemetryWindow::Feature* out = w.add_features();
    out->set_name(f.def.name());
    if (f.edges > 0) {
      for (const int64_t c : Take(f.bins_at, f.edges + 1)) out->add_counts(c);
    }
    if (sample_values_ > 0) {
      for (Shard& shard : shards_) {
        const int64_t n = std::min<int64_t>(
            shard.sampled[f.sampled_at].exchange(0, std::memory_order_relaxed), sample_values_);
        for (int64_t k = 0; k < n && out->samples_size() < sample_values_; ++k) {
          out->add_samples(
              shard.samples[f.samples_at + static_cast<size_t>(k)].load(std::memory_order_relaxed));
        }
      }
    }
  }
  if (classes_ > 0) {
    for (const int64_t c : Take(classes_at_, classes_)) w.add_class_counts(c);
    for (const int64_t c : Take(confidence_at_, kConfidenceBins)) w.add_confidence_counts(c);
    for (const int64_t c : Take(labelled_at_, classes_)) w.add_labelled(c);
    for (const int64_t c : Take(correct_at_, classes_)) w.add_correct(c);
    for (const int64_t c : Take(predicted_labelled_at_, classes_)) w.add_predicted_labelled(c);
  } else if (prediction_edges_ > 0) {
    for (const int64_t c : Take(predictions_at_, prediction_edges_ + 1)) w.add_prediction_counts(c);
  }
  {
    std::lock_guard lock(shadow_mu_);
    if (const int64_t skipped = shadow_skipped_.exchange(0, std::memory_order_relaxed);
        skipped > 0) {
      const int64_t version = skipped_version_.load(std::memory_order_relaxed);
      v1::TelemetryWindow::Shadow& s = shadows_[version];
      if (s.latency_counts_size() == 0) {
        s.set_version(version);
        s.mutable_latency_counts()->Resize(static_cast<int>(kLatencyBuckets), 0);
      }
      s.set_skipped(s.skipped() + skipped);
    }
    for (auto& [version, shadow] : shadows_) *w.add_shadows() = std::move(shadow);
    taken_any_ = taken_any_ || !shadows_.empty();
    shadows_.clear();
  }
  window_start_ms_ = FloorTo(absl::ToUnixMillis(now), step);
  // Empty only when every count is: a call racing with this close may have its request
  // counted in the window before and its features in this one.
  bool sampled = false;
  for (const auto& f : w.features()) sampled = sampled || f.samples_size() > 0;
  if (!taken_any_ && !sampled) return std::nullopt;
  return w;
}

}  // namespace edgeloop::agent
