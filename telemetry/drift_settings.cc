#include "telemetry/drift_settings.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace edgeloop::telemetry {
namespace {

bool Unset(const v1::DriftSettings& s) {
  return s.psi() == 0 && s.jensen_shannon() == 0 && s.ks_alpha() == 0 && s.min_count() == 0;
}

// NaN fails every comparison, so it is refused as out of range.
absl::Status InRange(const char* name, double value, double low, double high) {
  if (value == 0 || (value > low && value <= high)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(name, " must be in (", low, ", ", high, "], or 0 for the default; got ", value));
}

}  // namespace

absl::Status CheckDriftOverrides(const v1::DriftSettings& overrides) {
  RETURN_IF_ERROR(InRange("psi", overrides.psi(), 0, 10));
  RETURN_IF_ERROR(InRange("jensenShannon", overrides.jensen_shannon(), 0, 1));
  RETURN_IF_ERROR(InRange("ksAlpha", overrides.ks_alpha(), 0, 0.5));
  if (overrides.min_count() < 0 || overrides.min_count() > 1'000'000'000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "minCount must be in [1, 1000000000], or 0 for the default; got ", overrides.min_count()));
  }
  return absl::OkStatus();
}

DriftThresholds WithOverrides(DriftThresholds t, const v1::DriftSettings& overrides) {
  if (overrides.psi() > 0) t.psi = overrides.psi();
  if (overrides.jensen_shannon() > 0) t.jensen_shannon = overrides.jensen_shannon();
  if (overrides.ks_alpha() > 0) t.ks_alpha = overrides.ks_alpha();
  if (overrides.min_count() > 0) t.min_count = overrides.min_count();
  return t;
}

v1::DriftSettings ToProto(const DriftThresholds& t) {
  v1::DriftSettings s;
  s.set_psi(t.psi);
  s.set_jensen_shannon(t.jensen_shannon);
  s.set_ks_alpha(t.ks_alpha);
  s.set_min_count(t.min_count);
  return s;
}

absl::StatusOr<v1::DriftSettings> DriftSettingsStore::Overrides(store::Reader& db,
                                                                int64_t model_id) {
  ASSIGN_OR_RETURN(
      store::Rows rows,
      db.Query("SELECT settings FROM telemetry_drift_settings WHERE model_id = $1", {model_id}));
  v1::DriftSettings overrides;
  if (!rows.empty() && !overrides.ParseFromString(rows[0].Blob("settings"))) {
    return absl::DataLossError(
        absl::StrCat("the drift settings of model ", model_id, " do not parse"));
  }
  return overrides;
}

absl::Status DriftSettingsStore::SetOverrides(store::Transaction& tx, int64_t model_id,
                                              const v1::DriftSettings& overrides, int64_t now_ms) {
  if (Unset(overrides)) {
    return tx.Execute("DELETE FROM telemetry_drift_settings WHERE model_id = $1", {model_id})
        .status();
  }
  return tx
      .Execute(
          "INSERT INTO telemetry_drift_settings (model_id, settings, updated_ms) VALUES ($1, $2, "
          "$3) ON CONFLICT (model_id) DO UPDATE SET settings = excluded.settings, "
          "updated_ms = excluded.updated_ms",
          {model_id, store::Bytes{overrides.SerializeAsString()}, now_ms})
      .status();
}

}  // namespace edgeloop::telemetry
