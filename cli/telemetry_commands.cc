// edgeloop telemetry show|device.
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/command.h"
#include "cli/table.h"
#include "common/status.h"
#include "edgeloop/v1/telemetry.pb.h"

namespace edgeloop::cli {
namespace {

// --since DURATION as the start of the range, in Unix ms (0: the server's default).
absl::StatusOr<int64_t> Since(const Args& args) {
  if (!args.Has("since")) return 0;
  absl::Duration d;
  if (!absl::ParseDuration(args.Flag("since"), &d) || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--since must be a duration such as 1h or 30m");
  }
  return absl::ToUnixMillis(absl::Now() - d);
}

std::string Percent(const v1::Proportion& p) {
  if (p.trials() == 0) return "-";
  return absl::StrFormat("%.1f%% [%.1f, %.1f] of %d", 100 * p.value(), 100 * p.low(),
                         100 * p.high(), p.trials());
}

std::string Ms(double us) { return us > 0 ? absl::StrFormat("%.3g", us / 1000) : "-"; }

void PrintSummary(const v1::ModelTelemetry::Version& v, const v1::TelemetrySummary& s,
                  std::ostream& out) {
  Table table({"FIELD", "VALUE"});
  table.Add({"version", std::to_string(v.version())});
  table.Add({"reference", v.reference_source() == v1::ReferenceStatistics::SOURCE_UNSPECIFIED
                              ? "none yet (devices send raw values to take it from)"
                              : v1::ReferenceStatistics::Source_Name(v.reference_source())});
  table.Add({"windows", std::to_string(s.windows())});
  table.Add({"calls", std::to_string(s.requests())});
  table.Add({"errors", Percent(s.errors())});
  table.Add(
      {"latency ms p50/p95/p99", absl::StrCat(Ms(s.latency_p50_us()), " / ", Ms(s.latency_p95_us()),
                                              " / ", Ms(s.latency_p99_us()))});
  table.Add({"accuracy", Percent(s.accuracy())});
  table.Add({"reference accuracy", Percent(v.reference_accuracy())});
  int too_few = 0;
  for (const v1::FeatureDrift& f : s.features()) too_few += f.too_few() ? 1 : 0;
  table.Add({"drifted features",
             s.features_size() == 0
                 ? "-"
                 : absl::StrCat(
                       s.drifted_features(), " of ", s.features_size() - too_few, " judged",
                       too_few > 0 ? absl::StrCat(" (", too_few, " with too few values)") : "")});
  if (s.has_prediction()) {
    const char* verdict = s.prediction().too_few()   ? " (too few values to judge)"
                          : s.prediction().drifted() ? " (drifted)"
                                                     : "";
    table.Add({"prediction drift", absl::StrFormat("psi %.3f, js %.3f%s", s.prediction().psi(),
                                                   s.prediction().jensen_shannon(), verdict)});
  }
  table.Add({"cohorts", absl::StrJoin(v.cohorts(), ", ")});
  table.Add({"targets", absl::StrJoin(v.targets(), ", ")});
  out << table.Render();
  if (s.features_size() == 0) return;
  Table features({"FEATURE", "VALUES", "PSI", "JS", "KS D", "KS P (BH)", "DRIFTED"});
  for (const v1::FeatureDrift& f : s.features()) {
    features.Add({f.feature(), std::to_string(f.count()), absl::StrFormat("%.3f", f.psi()),
                  absl::StrFormat("%.3f", f.jensen_shannon()),
                  absl::StrFormat("%.3f", f.ks_statistic()),
                  absl::StrFormat("%.3g", f.ks_p_adjusted()),
                  f.too_few()   ? "too few values"
                  : f.drifted() ? "yes"
                                : "no"});
  }
  out << features.Render();
}

}  // namespace

namespace {

// "--psi 0.3" sets one threshold for the model, "--psi default" gives it back the server's.
absl::Status ThresholdFlag(const Args& args, const char* flag, double* field) {
  if (!args.Has(flag)) return absl::OkStatus();
  const std::string value = args.Flag(flag);
  if (value == "default") {
    *field = 0;
    return absl::OkStatus();
  }
  if (!absl::SimpleAtod(value, field) || *field <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " takes a positive number or \"default\", got \"", value, "\""));
  }
  return absl::OkStatus();
}

std::string Threshold(double effective, double override_value) {
  return absl::StrCat(effective, override_value > 0 ? " (set for this model)" : " (default)");
}

// edgeloop telemetry thresholds MODEL [--psi X] [--js X] [--ks-alpha X] [--min-count N]: shows
// the model's drift thresholds, changing those given first (the others stay as they are).
absl::Status ThresholdsCommand(const Command& c) {
  const Args& args = c.args;
  Client& client = c.client;
  v1::GetDriftSettingsRequest get;
  get.set_model(args.words[2]);
  v1::ModelDriftSettings settings;
  RETURN_IF_ERROR(
      FromGrpc(client.telemetry().GetDriftSettings(client.Context().get(), get, &settings)));
  if (args.Has("psi") || args.Has("js") || args.Has("ks-alpha") || args.Has("min-count")) {
    v1::SetDriftSettingsRequest set;
    set.set_model(get.model());
    v1::DriftSettings& o = *set.mutable_overrides() = settings.overrides();
    double psi = o.psi(), js = o.jensen_shannon(), alpha = o.ks_alpha();
    double min_count = static_cast<double>(o.min_count());
    RETURN_IF_ERROR(ThresholdFlag(args, "psi", &psi));
    RETURN_IF_ERROR(ThresholdFlag(args, "js", &js));
    RETURN_IF_ERROR(ThresholdFlag(args, "ks-alpha", &alpha));
    RETURN_IF_ERROR(ThresholdFlag(args, "min-count", &min_count));
    o.set_psi(psi);
    o.set_jensen_shannon(js);
    o.set_ks_alpha(alpha);
    o.set_min_count(static_cast<int64_t>(min_count));
    RETURN_IF_ERROR(
        FromGrpc(client.telemetry().SetDriftSettings(client.Context().get(), set, &settings)));
  }
  if (c.json()) return PrintJson(c, settings);
  const v1::DriftSettings& e = settings.effective();
  const v1::DriftSettings& o = settings.overrides();
  Table table({"THRESHOLD", "VALUE"});
  table.Add({"psi (drifted at or above)", Threshold(e.psi(), o.psi())});
  table.Add({"js (drifted at or above)", Threshold(e.jensen_shannon(), o.jensen_shannon())});
  table.Add({"ks-alpha (drifted below, BH-corrected)", Threshold(e.ks_alpha(), o.ks_alpha())});
  table.Add({"min-count (judged from)",
             Threshold(static_cast<double>(e.min_count()), static_cast<double>(o.min_count()))});
  c.out << table.Render();
  return absl::OkStatus();
}

}  // namespace

absl::Status TelemetryCommand(const Command& c) {
  const Args& args = c.args;
  Client& client = c.client;
  RETURN_IF_ERROR(
      Need(args, 3, "telemetry show MODEL | telemetry device ID | telemetry thresholds MODEL"));
  const std::string& verb = args.words[1];
  ASSIGN_OR_RETURN(int64_t from, Since(args));
  if (verb == "show") {
    v1::GetModelTelemetryRequest request;
    request.set_model(args.words[2]);
    request.set_from_ms(from);
    request.set_cohort(args.Flag("cohort"));
    if (args.Has("version")) {
      ASSIGN_OR_RETURN(int64_t version, Number(args.Flag("version"), "--version"));
      request.set_version(version);
    }
    if (args.Has("step")) {
      absl::Duration step;
      if (!absl::ParseDuration(args.Flag("step"), &step)) {
        return absl::InvalidArgumentError("--step must be a duration such as 5m");
      }
      request.set_step_seconds(absl::ToInt64Seconds(step));
    }
    v1::ModelTelemetry telemetry;
    RETURN_IF_ERROR(FromGrpc(
        client.telemetry().GetModelTelemetry(client.Context().get(), request, &telemetry)));
    if (c.json()) return PrintJson(c, telemetry);
    if (telemetry.versions().empty()) {
      c.out << "no telemetry for " << request.model() << " in the range\n";
    }
    for (const auto& v : telemetry.versions()) PrintSummary(v, v.total(), c.out);
    return absl::OkStatus();
  }
  if (verb == "device") {
    v1::GetDeviceTelemetryRequest request;
    request.set_device_id(args.words[2]);
    request.set_from_ms(from);
    if (args.Has("limit")) {
      ASSIGN_OR_RETURN(int64_t limit, Number(args.Flag("limit"), "--limit"));
      request.set_limit(static_cast<int32_t>(limit));
    }
    v1::DeviceTelemetryReport report;
    RETURN_IF_ERROR(
        FromGrpc(client.telemetry().GetDeviceTelemetry(client.Context().get(), request, &report)));
    if (c.json()) return PrintJson(c, report);
    c.out << "windows stored " << report.windows_stored() << ", refused "
          << report.windows_refused() << ", dropped on the device " << report.windows_dropped()
          << (report.last_refusal().empty() ? "" : ", last refusal: " + report.last_refusal())
          << "\n";
    Table table({"WINDOW", "END", "CALLS", "ERRORS", "LABELLED"});
    for (const v1::TelemetryWindow& w : report.windows()) {
      int64_t labelled = 0;
      for (int64_t n : w.labelled()) labelled += n;
      table.Add({w.id(), TimeMs(w.end_ms()), std::to_string(w.requests()),
                 std::to_string(w.errors()), std::to_string(labelled)});
    }
    c.out << table.Render();
    return absl::OkStatus();
  }
  if (verb == "thresholds") return ThresholdsCommand(c);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command \"telemetry ", verb, "\" (see edgeloop --help)"));
}

}  // namespace edgeloop::cli
