#include "telemetry/monitoring_specs.h"

#include <algorithm>

#include "common/status.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "registry/registry.h"

namespace edgeloop::telemetry {

absl::StatusOr<std::optional<v1::MonitoringSpec>> MonitoringSpecs::Spec(int64_t model_id,
                                                                        const std::string& model,
                                                                        int64_t version) {
  ASSIGN_OR_RETURN(registry::VersionSource source,
                   registry::Registry::FindVersion(*options_.database, model_id, version));
  ASSIGN_OR_RETURN(std::optional<v1::ReferenceStatistics> reference,
                   registry::Registry::Reference(*options_.database, model_id, version));
  v1::MonitoringSpec spec;
  spec.set_model(model);
  spec.set_version(version);
  spec.set_window_seconds(std::max<int64_t>(1, absl::ToInt64Seconds(options_.window)));
  if (reference.has_value()) {
    // The reference's features are the version's, with their edges.
    spec.set_reference_source(reference->source());
    for (const v1::FeatureReference& f : reference->features()) {
      v1::MonitoringSpec::Feature* out = spec.add_features();
      *out->mutable_feature() = f.feature();
      *out->mutable_edges() = f.edges();
    }
    *spec.mutable_prediction_edges() = reference->prediction_edges();
  } else {
    for (const v1::MonitoredFeature& f : source.monitored_features) {
      *spec.add_features()->mutable_feature() = f;
    }
    spec.set_sample_values(options_.sample_values);
  }
  if (spec.features_size() == 0 && !reference.has_value()) return std::nullopt;
  return spec;
}

absl::StatusOr<std::optional<SignedSpec>> MonitoringSpecs::For(int64_t model_id,
                                                               const std::string& model,
                                                               int64_t version) {
  const absl::Time now = options_.clock->Now();
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find({model_id, version}); it != cache_.end() && now < it->second.until)
      return it->second.spec;
  }
  ASSIGN_OR_RETURN(std::optional<v1::MonitoringSpec> spec, Spec(model_id, model, version));
  if (!spec.has_value()) {
    std::lock_guard lock(mu_);
    cache_[{model_id, version}] = {std::nullopt, absl::InfiniteFuture()};  // no float inputs
    return std::nullopt;
  }
  SignedSpec signed_spec;
  // Deterministic serialization: the same spec gives the same bytes, and Ed25519 the same
  // signature, on every replica.
  {
    google::protobuf::io::StringOutputStream stream(&signed_spec.bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    spec->SerializeToCodedStream(&coded);
  }
  ASSIGN_OR_RETURN(signed_spec.signature,
                   options_.signer->Sign(crypto::MonitoringSpecStatement(signed_spec.bytes)));
  const bool final = spec->reference_source() != v1::ReferenceStatistics::SOURCE_UNSPECIFIED;
  std::lock_guard lock(mu_);
  cache_[{model_id, version}] = {signed_spec,
                                 final ? absl::InfiniteFuture() : now + kProvisionalFor};
  return signed_spec;
}

void MonitoringSpecs::Forget(int64_t model_id, int64_t version) {
  std::lock_guard lock(mu_);
  cache_.erase({model_id, version});
}

}  // namespace edgeloop::telemetry
