#include "server/rollout_metrics.h"

#include "absl/strings/str_cat.h"

namespace edgeloop::server {
namespace {

constexpr const char* kStates[] = {"PENDING",      "IN_PROGRESS", "BAKING",    "PAUSED",
                                   "ROLLING_BACK", "ROLLED_BACK", "COMPLETED", "ABORTED"};

}  // namespace

RolloutMetrics::RolloutMetrics(prometheus::Registry& registry, rollout::Controller* controller,
                               const Clock* clock)
    : controller_(*controller), clock_(*clock) {
  by_state_ = &prometheus::BuildGauge()
                   .Name("edgeloop_rollouts")
                   .Help("Rollouts by state.")
                   .Register(registry);
  for (const char* state : kStates) states_[state] = &by_state_->Add({{"state", state}});
  transitions_ = &prometheus::BuildGauge()
                      .Name("edgeloop_rollout_transitions")
                      .Help(
                          "Rollout transitions this replica's controller wrote since it "
                          "started, by the state they led to.")
                      .Register(registry);
  info_ = &prometheus::BuildGauge()
               .Name("edgeloop_rollout_info")
               .Help(
                   "1 for each rollout shown, with its model, candidate version, replaced "
                   "version and state.")
               .Register(registry);
  wave_ = &prometheus::BuildGauge()
               .Name("edgeloop_rollout_wave")
               .Help(
                   "The rollout's current wave (1-based) and, with kind=\"total\", how many "
                   "waves it has.")
               .Register(registry);
  devices_ = &prometheus::BuildGauge()
                  .Name("edgeloop_rollout_devices")
                  .Help("Devices the rollout released, by where they are with the candidate.")
                  .Register(registry);
  gate_value_ = &prometheus::BuildGauge()
                     .Name("edgeloop_rollout_gate_value")
                     .Help("Each gate's value as last judged on the current wave.")
                     .Register(registry);
  gate_passing_ = &prometheus::BuildGauge()
                       .Name("edgeloop_rollout_gate_verdict")
                       .Help("1 for each gate's last verdict (PASS, FAIL, INCONCLUSIVE).")
                       .Register(registry);
}

void RolloutMetrics::Refresh() {
  std::lock_guard lock(mu_);
  const absl::Time now = clock_.Now();
  if (now < next_) return;
  next_ = now + kEvery;
  absl::StatusOr<std::map<std::string, int64_t>> counts = controller_.StateCounts();
  if (counts.ok()) {
    for (auto& [state, gauge] : states_) {
      auto it = counts->find(state);
      gauge->Set(it == counts->end() ? 0 : static_cast<double>(it->second));
    }
  }
  for (const auto& [state, n] : controller_.TransitionsWritten()) {
    auto it = transition_series_.find(state);
    if (it == transition_series_.end()) {
      it = transition_series_.emplace(state, &transitions_->Add({{"to_state", state}})).first;
    }
    it->second->Set(static_cast<double>(n));
  }
  absl::StatusOr<std::vector<v1::Rollout>> current = controller_.Current(kRecent);
  if (!current.ok()) return;
  std::map<std::string, Series> shown;
  for (const v1::Rollout& r : *current) {
    const std::string id = std::to_string(r.id());
    const std::string& model = r.spec().model();
    Series& mine = shown[id];
    auto set = [&](prometheus::Family<prometheus::Gauge>* family, prometheus::Labels labels,
                   double value) {
      labels.emplace("rollout", id);
      labels.emplace("model", model);
      prometheus::Gauge* g = &family->Add(labels);
      g->Set(value);
      mine[g] = family;
    };
    set(info_,
        {{"version", std::to_string(r.version())},
         {"replaced_version", std::to_string(r.replaced_version())},
         {"state", r.state()}},
        1);
    set(wave_, {{"kind", "current"}}, r.current_wave() + 1);
    set(wave_, {{"kind", "total"}}, r.wave_total());
    v1::WaveCounts sum;
    for (const v1::WaveStatus& w : r.waves()) {
      const v1::WaveCounts& c = w.counts();
      sum.set_pending(sum.pending() + c.pending());
      sum.set_downloading(sum.downloading() + c.downloading());
      sum.set_active(sum.active() + c.active());
      sum.set_failed(sum.failed() + c.failed());
      sum.set_rolled_back(sum.rolled_back() + c.rolled_back());
      sum.set_incompatible(sum.incompatible() + c.incompatible());
      sum.set_offline(sum.offline() + c.offline());
      sum.set_shadowing(sum.shadowing() + c.shadowing());
    }
    for (const auto& [status, n] :
         std::vector<std::pair<const char*, int64_t>>{{"pending", sum.pending()},
                                                      {"downloading", sum.downloading()},
                                                      {"shadowing", sum.shadowing()},
                                                      {"active", sum.active()},
                                                      {"failed", sum.failed()},
                                                      {"rolled_back", sum.rolled_back()},
                                                      {"incompatible", sum.incompatible()},
                                                      {"offline", sum.offline()}}) {
      set(devices_, {{"status", status}}, static_cast<double>(n));
    }
    for (const v1::GateResult& g : r.gates()) {
      set(gate_value_, {{"metric", g.metric()}}, g.value());
      for (const char* verdict : {"PASS", "FAIL", "INCONCLUSIVE"}) {
        set(gate_passing_, {{"metric", g.metric()}, {"verdict", verdict}},
            g.verdict() == verdict ? 1 : 0);
      }
    }
  }
  // A series of a rollout no longer shown, or of a label set it has left (its state moved),
  // goes away rather than keep its last value.
  for (auto& [id, gauges] : series_) {
    const Series& keep = shown[id];
    for (auto& [g, family] : gauges) {
      if (!keep.count(g)) family->Remove(g);
    }
  }
  series_ = std::move(shown);
}

}  // namespace edgeloop::server
