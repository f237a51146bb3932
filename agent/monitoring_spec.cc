#include "agent/monitoring_spec.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/monitored_feature.h"
#include "common/signing.h"
#include "common/status.h"

namespace edgeloop::agent {
absl::StatusOr<std::optional<v1::MonitoringSpec>> VerifyMonitoringSpec(
    const v1::ModuleRef& ref, const std::string& signing_key_pem) {
  if (ref.monitoring().empty() && ref.monitoring_signature().empty()) return std::nullopt;
  const std::string where = absl::StrCat("monitoring spec of ", ref.model(), " v", ref.version());
  if (signing_key_pem.empty() ||
      !crypto::VerifySignature(signing_key_pem, crypto::MonitoringSpecStatement(ref.monitoring()),
                               ref.monitoring_signature())) {
    return absl::PermissionDeniedError(absl::StrCat(where, ": the signature does not verify"));
  }
  v1::MonitoringSpec spec;
  if (!spec.ParseFromString(ref.monitoring())) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": does not parse"));
  }
  if (spec.model() != ref.model() || spec.version() != ref.version()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": it is signed for ", spec.model(), " v", spec.version()));
  }
  if (spec.window_seconds() < 1 || spec.window_seconds() > 86400) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": a window of ", spec.window_seconds(), " s"));
  }
  if (spec.features_size() > kMaxMonitoredFeatures || spec.sample_values() < 0 ||
      spec.sample_values() > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": too many features or samples"));
  }
  const bool referenced = spec.reference_source() != v1::ReferenceStatistics::SOURCE_UNSPECIFIED;
  for (const v1::MonitoringSpec::Feature& f : spec.features()) {
    if (referenced == f.edges().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": feature ", f.feature().name(),
          referenced ? " has no edges though the version has a reference" : " has edges"));
    }
    if (referenced) {
      RETURN_IF_ERROR(CheckEdges(f.edges(), absl::StrCat(where, ": feature ", f.feature().name())));
    }
  }
  if (!spec.prediction_edges().empty()) {
    RETURN_IF_ERROR(CheckEdges(spec.prediction_edges(), where + ": the prediction"));
  }
  return spec;
}

}  // namespace edgeloop::agent
