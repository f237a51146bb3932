// edgeloop rollout create|list|show|events|pause|resume|abort|promote.
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/command.h"
#include "cli/table.h"
#include "common/status.h"
#include "edgeloop/v1/rollout.pb.h"

namespace edgeloop::cli {
namespace {

absl::StatusOr<int64_t> Seconds(const std::string& text, const char* flag) {
  int64_t seconds = 0;
  if (absl::SimpleAtoi(text, &seconds) && seconds >= 0) return seconds;
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " must be seconds or a duration such as 10m, got \"", text, "\""));
  }
  return absl::ToInt64Seconds(d);
}

// --waves 1%,10%,50%,100% (percentages) or --waves 5,50,500 (device counts).
absl::Status ParseWaves(const std::string& text, v1::RolloutSpec& spec) {
  std::vector<std::string> parts = absl::StrSplit(text, ',', absl::SkipEmpty());
  const bool percent = !parts.empty() && absl::EndsWith(parts[0], "%");
  for (std::string& part : parts) {
    absl::string_view p = part;
    if (absl::ConsumeSuffix(&p, "%") != percent) {
      return absl::InvalidArgumentError("--waves: give every wave as a percentage or none");
    }
    double value = 0;
    if (!absl::SimpleAtod(p, &value)) {
      return absl::InvalidArgumentError(absl::StrCat("--waves: \"", part, "\" is not a number"));
    }
    if (percent) {
      spec.add_waves(value);
    } else {
      spec.add_wave_counts(static_cast<int64_t>(value));
    }
  }
  return absl::OkStatus();
}

// --gate 'metric OP threshold[:min=N][:window=D]', e.g. accuracy_delta>=-2:min=200:window=10m.
absl::Status ParseGate(const std::string& text, v1::RolloutGate& gate) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  const std::string& head = parts[0];
  size_t at = head.find_first_of("<>");
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gate \"", text, "\": expected METRIC<=X, METRIC>=X, METRIC<X or METRIC>X"));
  }
  size_t after = at + 1 < head.size() && head[at + 1] == '=' ? at + 2 : at + 1;
  gate.set_metric(head.substr(0, at));
  gate.set_op(head.substr(at, after - at));
  double threshold = 0;
  if (!absl::SimpleAtod(head.substr(after), &threshold)) {
    return absl::InvalidArgumentError(absl::StrCat("--gate \"", text, "\": bad threshold"));
  }
  gate.set_threshold(threshold);
  for (size_t i = 1; i < parts.size(); ++i) {
    if (absl::StartsWith(parts[i], "min=")) {
      ASSIGN_OR_RETURN(int64_t n, Number(parts[i].substr(4), "--gate min="));
      gate.set_min_samples(n);
    } else if (absl::StartsWith(parts[i], "window=")) {
      ASSIGN_OR_RETURN(int64_t s, Seconds(parts[i].substr(7), "gate window="));
      gate.set_window_seconds(s);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--gate \"", text, "\": unknown part \"", parts[i], "\" (min=, window=)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::RolloutSpec> SpecFromFlags(const Args& args) {
  v1::RolloutSpec spec;
  spec.set_model(args.Flag("model"));
  if (spec.model().empty()) return absl::InvalidArgumentError("rollout create needs --model");
  if (args.Has("version")) {
    ASSIGN_OR_RETURN(int64_t v, Number(args.Flag("version"), "--version"));
    spec.set_version(v);
  }
  spec.set_alias(args.Flag("alias"));
  spec.set_selector(args.Flag("selector"));
  if (args.Has("waves")) RETURN_IF_ERROR(ParseWaves(args.Flag("waves"), spec));
  if (args.Has("rate")) {
    std::vector<std::string> r = absl::StrSplit(args.Flag("rate"), ',');
    double factor = 0;
    int64_t start = 0, per_minute = 0;
    if (r.size() < 2 || r.size() > 3 || !absl::SimpleAtoi(r[0], &start) ||
        !absl::SimpleAtod(r[1], &factor) ||
        (r.size() == 3 && !absl::SimpleAtoi(r[2], &per_minute))) {
      return absl::InvalidArgumentError("--rate is START,FACTOR[,MAX_PER_MINUTE], e.g. 10,2,1000");
    }
    spec.mutable_rate()->set_start(start);
    spec.mutable_rate()->set_factor(factor);
    spec.mutable_rate()->set_max_per_minute(per_minute);
  }
  if (args.Has("bake")) {
    ASSIGN_OR_RETURN(int64_t s, Seconds(args.Flag("bake"), "bake"));
    spec.set_bake_seconds(s);
  }
  for (const std::string& g : args.All("gate")) RETURN_IF_ERROR(ParseGate(g, *spec.add_gates()));
  spec.set_on_failure(args.Flag("on-failure"));
  if (args.Has("max-concurrent")) {
    ASSIGN_OR_RETURN(int64_t n, Number(args.Flag("max-concurrent"), "--max-concurrent"));
    spec.set_max_concurrent(n);
  }
  if (args.Has("maintenance-window")) {
    v1::MaintenanceWindow& w = *spec.mutable_maintenance_window();
    w.set_cron(args.Flag("maintenance-window"));
    ASSIGN_OR_RETURN(int64_t s,
                     Seconds(args.Flag("maintenance-duration", "1h"), "maintenance-duration"));
    w.set_duration_seconds(s);
    w.set_time_zone(args.Flag("time-zone"));
  }
  if (args.Has("offline-deadline")) {
    ASSIGN_OR_RETURN(int64_t s, Seconds(args.Flag("offline-deadline"), "offline-deadline"));
    spec.set_offline_deadline_seconds(s);
  }
  if (args.Has("inconclusive")) {
    ASSIGN_OR_RETURN(int64_t s, Seconds(args.Flag("inconclusive"), "inconclusive"));
    spec.set_inconclusive_seconds(s);
  }
  if (args.Has("shadow")) {
    v1::ShadowStage& shadow = *spec.mutable_shadow();
    ASSIGN_OR_RETURN(int64_t s, Seconds(args.Flag("shadow"), "shadow"));
    shadow.set_seconds(s);
    auto number = [&](const char* flag, void (v1::ShadowStage::*set)(double)) -> absl::Status {
      if (!args.Has(flag)) return absl::OkStatus();
      double v = 0;
      if (!absl::SimpleAtod(args.Flag(flag), &v)) {
        return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be a number"));
      }
      (shadow.*set)(v);
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(number("shadow-sample", &v1::ShadowStage::set_sample_ratio));
    RETURN_IF_ERROR(number("shadow-cpu", &v1::ShadowStage::set_cpu_budget));
    RETURN_IF_ERROR(number("shadow-tolerance", &v1::ShadowStage::set_tolerance));
  }
  spec.set_canary_selector(args.Flag("canary"));
  if (args.Has("supersedes")) {
    ASSIGN_OR_RETURN(int64_t id, Number(args.Flag("supersedes"), "--supersedes"));
    spec.set_supersedes(id);
  }
  spec.set_description(args.Flag("description"));
  return spec;
}

std::string Interval(const v1::GateResult& g) {
  if (g.low() == 0 && g.high() == 0) return "-";
  return absl::StrFormat("[%.3g, %.3g]", g.low(), g.high());
}

void PrintRollout(const v1::Rollout& r, std::ostream& out) {
  const v1::RolloutSpec& s = r.spec();
  out << absl::StrFormat("rollout %d: %s v%d", r.id(), s.model(), r.version());
  if (r.replaced_version() > 0) out << " replacing v" << r.replaced_version();
  out << absl::StrFormat(" on '%s' (%d devices)\n", s.selector(), r.matching_devices());
  out << absl::StrFormat("state %s, wave %d of %d%s, on failure %s, bake %ds", r.state(),
                         r.current_wave() + 1, r.wave_total(),
                         r.shadowing() ? " (shadow stage)" : "", s.on_failure(), s.bake_seconds());
  if (s.has_shadow()) {
    out << absl::StrFormat(", shadow %ds (%g of calls, %g of a core)", s.shadow().seconds(),
                           s.shadow().sample_ratio(), s.shadow().cpu_budget());
  }
  out << "\n";
  if (!r.message().empty()) out << r.message() << "\n";
  Table waves({"WAVE", "TARGET", "DEVICES", "PENDING", "DOWNLOADING", "SHADOWING", "ACTIVE",
               "FAILED", "ROLLED BACK", "INCOMPATIBLE", "OFFLINE", "STARTED"});
  for (const v1::WaveStatus& w : r.waves()) {
    const v1::WaveCounts& c = w.counts();
    waves.Add({absl::StrCat(w.index() + 1, w.index() == r.current_wave() ? " *" : ""), w.target(),
               std::to_string(w.devices()), std::to_string(c.pending()),
               std::to_string(c.downloading()), std::to_string(c.shadowing()),
               std::to_string(c.active()),
               std::to_string(c.failed()), std::to_string(c.rolled_back()),
               std::to_string(c.incompatible()), std::to_string(c.offline()),
               w.has_start_time() ? Time(w.start_time()) : "-"});
  }
  out << waves.Render();
  if (r.gates_size() == 0) return;
  Table gates({"GATE", "VALUE", "INTERVAL", "SAMPLES", "VERDICT", "DETAIL"});
  for (const v1::GateResult& g : r.gates()) {
    gates.Add({absl::StrCat(g.metric(), " ", g.op(), " ", g.threshold()),
               absl::StrFormat("%.4g", g.value()), Interval(g), std::to_string(g.samples()),
               g.verdict(), g.detail()});
  }
  out << gates.Render();
}

bool Finished(const std::string& state) {
  return state == "COMPLETED" || state == "ROLLED_BACK" || state == "ABORTED";
}

}  // namespace

absl::Status RolloutCommand(const Command& c) {
  const Args& args = c.args;
  Client& client = c.client;
  RETURN_IF_ERROR(Need(args, 2, "rollout create|list|show|events|pause|resume|abort|promote"));
  const std::string& verb = args.words[1];
  if (verb == "create") {
    ASSIGN_OR_RETURN(v1::RolloutSpec spec, SpecFromFlags(args));
    v1::Rollout created;
    RETURN_IF_ERROR(
        FromGrpc(client.rollouts().CreateRollout(client.Context().get(), spec, &created)));
    return Print(c, created, [&] { PrintRollout(created, c.out); });
  }
  if (verb == "list") {
    v1::ListRolloutsRequest request;
    request.set_model(args.Flag("model"));
    request.set_active_only(args.Has("active"));
    v1::ListRolloutsResponse listed;
    RETURN_IF_ERROR(
        FromGrpc(client.rollouts().ListRollouts(client.Context().get(), request, &listed)));
    return Print(c, listed, [&] {
      Table table({"ID", "MODEL", "VERSION", "SELECTOR", "STATE", "WAVE", "DEVICES", "CREATED"});
      for (const v1::Rollout& r : listed.rollouts()) {
        table.Add({std::to_string(r.id()), r.spec().model(), std::to_string(r.version()),
                   r.spec().selector().empty() ? "(all)" : r.spec().selector(), r.state(),
                   absl::StrCat(r.current_wave() + 1, "/", r.wave_total()),
                   std::to_string(r.matching_devices()), Time(r.create_time())});
      }
      c.out << table.Render();
    });
  }
  RETURN_IF_ERROR(Need(args, 3, "rollout show|events|pause|resume|abort|promote ID"));
  ASSIGN_OR_RETURN(int64_t id, Number(args.words[2], "rollout ID"));
  if (verb == "show") {
    v1::GetRolloutRequest request;
    request.set_id(id);
    absl::Duration every = absl::Seconds(2);
    if (args.Has("interval") && !absl::ParseDuration(args.Flag("interval"), &every)) {
      return absl::InvalidArgumentError("--interval must be a duration such as 2s");
    }
    while (true) {
      v1::Rollout r;
      RETURN_IF_ERROR(FromGrpc(client.rollouts().GetRollout(client.Context().get(), request, &r)));
      if (c.json()) {
        RETURN_IF_ERROR(PrintJson(c, r));
      } else {
        PrintRollout(r, c.out);
      }
      // --watch follows it until it finishes.
      if (!args.Has("watch") || Finished(r.state())) return absl::OkStatus();
      c.out << "\n" << std::flush;
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(every));
    }
  }
  if (verb == "events") {
    v1::ListRolloutEventsRequest request;
    request.set_id(id);
    request.set_page_size(1000);
    v1::ListRolloutEventsResponse events;
    RETURN_IF_ERROR(
        FromGrpc(client.rollouts().ListRolloutEvents(client.Context().get(), request, &events)));
    return Print(c, events, [&] {
      Table table({"ID", "TIME", "FROM", "TO", "WAVE", "BY", "REASON"});
      for (const v1::RolloutEvent& e : events.events()) {
        table.Add({std::to_string(e.id()), Time(e.time()),
                   e.from_state().empty() ? "-" : e.from_state(), e.to_state(),
                   std::to_string(e.wave() + 1), e.actor(), e.reason()});
      }
      c.out << table.Render();
    });
  }
  v1::RolloutActionRequest action;
  action.set_id(id);
  action.set_reason(args.Flag("reason"));
  v1::Rollout r;
  grpc::Status status;
  if (verb == "pause") {
    status = client.rollouts().PauseRollout(client.Context().get(), action, &r);
  } else if (verb == "resume") {
    status = client.rollouts().ResumeRollout(client.Context().get(), action, &r);
  } else if (verb == "abort") {
    status = client.rollouts().AbortRollout(client.Context().get(), action, &r);
  } else if (verb == "promote") {
    status = client.rollouts().PromoteRollout(client.Context().get(), action, &r);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command \"rollout ", verb, "\" (see edgeloop --help)"));
  }
  RETURN_IF_ERROR(FromGrpc(status));
  return Print(c, r, [&] { PrintRollout(r, c.out); });
}

}  // namespace edgeloop::cli
