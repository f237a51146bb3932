#include "agent/shadow_runner.h"

#include <time.h>

#include <algorithm>
#include <cmath>

#include "absl/time/clock.h"
#include "agent/thread_priority.h"
#include "agent/window_counters.h"
#include "common/logging.h"

namespace edgeloop::agent {
namespace {

absl::Duration ThreadCpuTime() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::DurationFromTimespec(ts);
}

bool SameSignature(const elm_module& a, const elm_module& b) {
  if (a.num_inputs != b.num_inputs || a.num_outputs != b.num_outputs) return false;
  auto same = [](const elm_tensor& x, const elm_tensor& y) {
    return x.dtype == y.dtype && x.rank == y.rank && std::equal(x.dims, x.dims + x.rank, y.dims);
  };
  for (uint32_t k = 0; k < a.num_inputs; ++k) {
    if (!same(a.inputs[k], b.inputs[k])) return false;
  }
  for (uint32_t k = 0; k < a.num_outputs; ++k) {
    if (!same(a.outputs[k], b.outputs[k])) return false;
  }
  return true;
}

}  // namespace

bool OutputsAgree(const elm_module& module, const std::vector<std::vector<float>>& active,
                  const std::vector<std::vector<float>>& candidate, double tolerance) {
  if (active.size() != candidate.size() || active.empty()) return false;
  if (tolerance > 0) {
    for (size_t k = 0; k < active.size(); ++k) {
      if (active[k].size() != candidate[k].size()) return false;
      for (size_t i = 0; i < active[k].size(); ++i) {
        // NaN on either side is not agreement.
        if (!(std::fabs(active[k][i] - candidate[k][i]) <= tolerance)) return false;
      }
    }
    return true;
  }
  const std::vector<float>& a = active[0];
  const std::vector<float>& b = candidate[0];
  if (a.size() != b.size() || a.empty() || module.num_outputs == 0) return false;
  if (a.size() == 1) return a[0] == b[0];
  return std::max_element(a.begin(), a.end()) - a.begin() ==
         std::max_element(b.begin(), b.end()) - b.begin();
}

ShadowRunner::ShadowRunner(const Clock* clock, size_t queue_limit)
    : clock_(clock), queue_limit_(std::max<size_t>(1, queue_limit)) {
  thread_ = std::thread([this] { Loop(); });
}

ShadowRunner::~ShadowRunner() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ShadowRunner::Set(std::shared_ptr<ServingModel> candidate, const Settings& settings) {
  NormalPriority normal;  // takes the lock calls take (see thread_priority.h)
  const std::string model = candidate->ref().model();
  Candidate c;
  c.module = std::move(candidate);
  c.settings = settings;
  c.settings.sample_ratio = std::clamp(settings.sample_ratio, 0.0, 1.0);
  c.settings.cpu_budget = std::clamp(settings.cpu_budget, 0.0, 1.0);
  c.filled = clock_->Now();
  c.tokens = c.settings.cpu_budget * absl::ToDoubleSeconds(kBurst);
  std::shared_ptr<ServingModel> replaced;
  {
    std::lock_guard lock(mu_);
    auto& slot = candidates_[model];
    replaced = std::move(slot.module);  // unloaded outside the lock
    slot = std::move(c);
    any_.store(true, std::memory_order_relaxed);
  }
}

void ShadowRunner::Clear(const std::string& model) {
  NormalPriority normal;
  std::shared_ptr<ServingModel> gone;
  {
    std::lock_guard lock(mu_);
    auto it = candidates_.find(model);
    if (it == candidates_.end()) return;
    gone = std::move(it->second.module);
    candidates_.erase(it);
    any_.store(!candidates_.empty(), std::memory_order_relaxed);
  }
}

std::vector<std::shared_ptr<ServingModel>> ShadowRunner::Candidates() const {
  NormalPriority normal;
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<ServingModel>> out;
  for (const auto& [model, c] : candidates_) out.push_back(c.module);
  return out;
}

void ShadowRunner::Offer(const std::shared_ptr<ServingModel>& active, const void* const* inputs,
                         const void* const* outputs) {
  if (!any_.load(std::memory_order_relaxed)) return;
  const elm_module& m = active->module();
  Job job;
  {
    std::lock_guard lock(mu_);
    auto it = candidates_.find(active->ref().model());
    if (it == candidates_.end()) return;
    Candidate& c = it->second;
    if (c.module->ref().digest() == active->ref().digest() &&
        c.module->ref().version() == active->ref().version()) {
      return;  // it serves already
    }
    // An even spread of the sampled share: call n is taken when n * ratio crosses an integer.
    const uint64_t n = c.draws++;
    if (std::floor((n + 1) * c.settings.sample_ratio) == std::floor(n * c.settings.sample_ratio))
      return;
    const absl::Time now = clock_->Now();
    const double cap = c.settings.cpu_budget * absl::ToDoubleSeconds(kBurst);
    c.tokens = std::min(
        cap, c.tokens + c.settings.cpu_budget * absl::ToDoubleSeconds(now - c.filled));
    c.filled = now;
    const int64_t version = c.module->ref().version();
    if (c.tokens <= 0 || queue_.size() >= queue_limit_) {
      if (WindowCounters* counters = active->counters()) counters->RecordShadowSkipped(version);
      return;
    }
    job.active = active;
    job.candidate = c.module;
    job.tolerance = c.settings.tolerance;
  }
  // The copies are made outside the lock; the job is queued after.
  for (uint32_t k = 0; k < m.num_inputs; ++k) {
    const float* p = static_cast<const float*>(inputs[k]);
    job.inputs.emplace_back(p, p + Elements(m.inputs[k]));
  }
  for (uint32_t k = 0; k < m.num_outputs; ++k) {
    const float* p = static_cast<const float*>(outputs[k]);
    job.outputs.emplace_back(p, p + Elements(m.outputs[k]));
  }
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void ShadowRunner::WaitIdle() {
  NormalPriority normal;
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return queue_.empty() && !running_job_; });
}

absl::Duration ShadowRunner::Run(const Job& job) {
  const absl::Duration cpu_before = ThreadCpuTime();
  const elm_module& a = job.active->module();
  const elm_module& c = job.candidate->module();
  const int64_t version = job.candidate->ref().version();
  WindowCounters* counters = job.active->counters();
  if (!SameSignature(a, c)) {
    // Not comparable: counted as the candidate failing the call.
    if (counters != nullptr) {
      counters->RecordShadow(version, job.candidate->ref().digest(), false, false,
                             absl::ZeroDuration());
    }
    return ThreadCpuTime() - cpu_before;
  }
  std::vector<const void*> inputs;
  for (const std::vector<float>& t : job.inputs) inputs.push_back(t.data());
  std::vector<std::vector<float>> outputs(c.num_outputs);
  std::vector<void*> out;
  for (uint32_t k = 0; k < c.num_outputs; ++k) {
    outputs[k].resize(static_cast<size_t>(Elements(c.outputs[k])));
    out.push_back(outputs[k].data());
  }
  const absl::Time started = absl::Now();
  const bool ok = job.candidate->Run(inputs.data(), out.data()).ok();
  const absl::Duration run = absl::Now() - started;
  const bool agreed = ok && OutputsAgree(c, job.outputs, outputs, job.tolerance);
  if (counters != nullptr) {
    counters->RecordShadow(version, job.candidate->ref().digest(), ok, agreed, run);
  }
  return ThreadCpuTime() - cpu_before;
}

void ShadowRunner::Loop() {
  // Shadowed calls take only CPU the device's applications leave (see thread_priority.h).
  BackgroundPriority background;
  for (;;) {
    Job job;
    {
      NormalPriority normal;  // the lock is one calls take
      std::unique_lock lock(mu_);
      running_job_ = false;
      if (queue_.empty()) idle_.notify_all();
      wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      running_job_ = true;
    }
    const absl::Duration spent = Run(job);
    {
      NormalPriority normal;
      std::lock_guard lock(mu_);
      auto it = candidates_.find(job.candidate->ref().model());
      if (it != candidates_.end() && it->second.module == job.candidate) {
        it->second.tokens -= absl::ToDoubleSeconds(spent);
      }
    }
  }
}

}  // namespace edgeloop::agent
