#include "server/rest/routes.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "server/rest/json.h"

namespace edgeloop::server::rest {
namespace {

template <typename Req, typename Resp>
using ApiCall = absl::StatusOr<Resp> (Api::*)(const Principal&, const Req&);

/// How a route fills its request message from the path, query and body.
template <typename Req>
using Binder = std::function<absl::Status(const RestRequest&, Req*)>;

template <typename Req, typename Resp>
RestHandler Json(Api* api, ApiCall<Req, Resp> call, Binder<Req> bind, int success_status = 200) {
  return [api, call, bind,
          success_status](const RestRequest& request) -> absl::StatusOr<RestResponse> {
    Req message;
    absl::Status bound = bind(request, &message);
    if (!bound.ok()) return bound;
    absl::StatusOr<Resp> result = (api->*call)(*request.principal, message);
    if (!result.ok()) return result.status();
    return RestResponse{success_status, "application/json", PrintProtoJson(*result)};
  };
}

absl::Status QueryInt(const RestRequest& r, const std::string& key, int64_t* out) {
  auto it = r.query.find(key);
  if (it == r.query.end() || it->second.empty()) return absl::OkStatus();
  if (!absl::SimpleAtoi(it->second, out)) {
    return absl::InvalidArgumentError(absl::StrCat("query parameter ", key, " must be an integer"));
  }
  return absl::OkStatus();
}

// A numeric id in the path (rollouts are numbered).
absl::StatusOr<int64_t> PathId(const RestRequest& r, const std::string& key) {
  int64_t id = 0;
  if (!absl::SimpleAtoi(r.path.at(key), &id) || id <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("{", key, "} in the path must be a positive integer"));
  }
  return id;
}

std::string Query(const RestRequest& r, const std::string& key) {
  auto it = r.query.find(key);
  return it == r.query.end() ? "" : it->second;
}

// A time in a query: Unix milliseconds, or RFC 3339 (2026-12-07T10:00:00Z).
absl::Status QueryTime(const RestRequest& r, const std::string& key, int64_t* out_ms) {
  const std::string value = Query(r, key);
  if (value.empty()) return absl::OkStatus();
  if (absl::SimpleAtoi(value, out_ms)) return absl::OkStatus();
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, value, &t, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "query parameter ", key, " must be Unix milliseconds or an RFC 3339 time: ", error));
  }
  *out_ms = absl::ToUnixMillis(t);
  return absl::OkStatus();
}

// A duration in a query: seconds, or with a unit (90s, 5m, 1h).
absl::Status QuerySeconds(const RestRequest& r, const std::string& key, int64_t* out) {
  const std::string value = Query(r, key);
  if (value.empty()) return absl::OkStatus();
  if (absl::SimpleAtoi(value, out)) return absl::OkStatus();
  absl::Duration d;
  if (!absl::ParseDuration(value, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("query parameter ", key, " must be seconds or a duration such as 5m"));
  }
  *out = absl::ToInt64Seconds(d);
  return absl::OkStatus();
}

// ?pageSize=&pageToken= of a paged list, into its request message.
template <typename Request>
absl::Status Page(const RestRequest& r, Request* m) {
  int64_t size = 0;
  absl::Status s = QueryInt(r, "pageSize", &size);
  m->set_page_size(static_cast<int32_t>(std::clamp<int64_t>(size, 0, 100000)));
  m->set_page_token(Query(r, "pageToken"));
  return s;
}

// The path names the model; a body that names another one is a client bug worth reporting.
absl::Status ModelFromPath(const RestRequest& r, std::string* model) {
  const std::string& from_path = r.path.at("model");
  if (!model->empty() && *model != from_path) {
    return absl::InvalidArgumentError(
        absl::StrCat("body names model \"", *model, "\" but the path names \"", from_path, "\""));
  }
  *model = from_path;
  return absl::OkStatus();
}

absl::Status Body(const RestRequest& r, google::protobuf::Message* m) {
  absl::Status s = ParseProtoJson(r.body, m);
  if (s.ok()) return s;
  return absl::InvalidArgumentError(absl::StrCat("malformed request body: ", s.message()));
}

}  // namespace

Router BuildRouter(Api* api, ServerMetrics* metrics, std::function<absl::Status()> readiness) {
  Router router;

  router.Add("GET", "/healthz", RouteKind::kPublic,
             [](const RestRequest&) -> absl::StatusOr<RestResponse> {
               return RestResponse{200, "application/json", "{\"status\":\"ok\"}"};
             });
  router.Add("GET", "/readyz", RouteKind::kPublic,
             [readiness](const RestRequest&) -> absl::StatusOr<RestResponse> {
               absl::Status ready = readiness();
               if (!ready.ok())
                 return absl::UnavailableError(absl::StrCat("not ready: ", ready.message()));
               return RestResponse{200, "application/json", "{\"status\":\"ready\"}"};
             });
  router.Add(
      "GET", "/metrics", RouteKind::kPublic,
      [metrics](const RestRequest&) -> absl::StatusOr<RestResponse> {
        return RestResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics->Render()};
      });

  router.Add("POST", "/v1/blobs", RouteKind::kBlobUpload);
  router.Add("GET", "/v1/blobs/{digest}", RouteKind::kBlobDownload);

  router.Add("POST", "/v1/models", RouteKind::kJson,
             Json<v1::CreateModelRequest, v1::Model>(api, &Api::CreateModel, Body, 201));
  router.Add("GET", "/v1/models", RouteKind::kJson,
             Json<v1::ListModelsRequest, v1::ListModelsResponse>(api, &Api::ListModels,
                                                                 Page<v1::ListModelsRequest>));
  router.Add("GET", "/v1/models/{model}", RouteKind::kJson,
             Json<v1::GetModelRequest, v1::Model>(api, &Api::GetModel,
                                                  [](const RestRequest& r, v1::GetModelRequest* m) {
                                                    m->set_model(r.path.at("model"));
                                                    return absl::OkStatus();
                                                  }));
  router.Add("POST", "/v1/models/{model}/versions", RouteKind::kJson,
             Json<v1::CreateVersionRequest, v1::ModelVersion>(
                 api, &Api::CreateVersion,
                 [](const RestRequest& r, v1::CreateVersionRequest* m) {
                   absl::Status s = Body(r, m);
                   if (!s.ok()) return s;
                   return ModelFromPath(r, m->mutable_model());
                 },
                 201));
  router.Add("GET", "/v1/models/{model}/versions", RouteKind::kJson,
             Json<v1::ListVersionsRequest, v1::ListVersionsResponse>(
                 api, &Api::ListVersions, [](const RestRequest& r, v1::ListVersionsRequest* m) {
                   m->set_model(r.path.at("model"));
                   return Page(r, m);
                 }));
  // A version segment is a number or an alias: /versions/3 and /versions/production.
  router.Add(
      "GET", "/v1/models/{model}/versions/{version}", RouteKind::kJson,
      Json<v1::GetVersionRequest, v1::ModelVersion>(
          api, &Api::GetVersion, [](const RestRequest& r, v1::GetVersionRequest* m) {
            m->set_model(r.path.at("model"));
            const std::string& v = r.path.at("version");
            int64_t number = 0;
            if (!v.empty() && absl::ascii_isdigit(static_cast<unsigned char>(v[0]))) {
              if (!absl::SimpleAtoi(v, &number) || number <= 0) {
                return absl::InvalidArgumentError(absl::StrCat("invalid version \"", v, "\""));
              }
              m->set_version(number);
            } else {
              m->set_alias(v);
            }
            return absl::OkStatus();
          }));
  router.Add(
      "PUT", "/v1/models/{model}/aliases/{alias}", RouteKind::kJson,
      Json<v1::SetAliasRequest, v1::Alias>(
          api, &Api::SetAlias, [](const RestRequest& r, v1::SetAliasRequest* m) {
            absl::Status s = Body(r, m);
            if (!s.ok()) return s;
            if (!m->alias().empty() && m->alias() != r.path.at("alias")) {
              return absl::InvalidArgumentError("body names a different alias than the path");
            }
            m->set_alias(r.path.at("alias"));
            return ModelFromPath(r, m->mutable_model());
          }));
  router.Add("GET", "/v1/models/{model}/versions/{version}/artifacts", RouteKind::kJson,
             Json<v1::ListArtifactsRequest, v1::ListArtifactsResponse>(
                 api, &Api::ListArtifacts, [](const RestRequest& r, v1::ListArtifactsRequest* m) {
                   m->set_model(r.path.at("model"));
                   int64_t number = 0;
                   if (!absl::SimpleAtoi(r.path.at("version"), &number) || number <= 0) {
                     return absl::InvalidArgumentError("version must be a positive number");
                   }
                   m->set_version(number);
                   return absl::OkStatus();
                 }));
  router.Add("GET", "/v1/models/{model}/aliases/{alias}", RouteKind::kJson,
             Json<v1::GetAliasRequest, v1::Alias>(api, &Api::GetAlias,
                                                  [](const RestRequest& r, v1::GetAliasRequest* m) {
                                                    m->set_model(r.path.at("model"));
                                                    m->set_alias(r.path.at("alias"));
                                                    return absl::OkStatus();
                                                  }));
  router.Add(
      "GET", "/v1/models/{model}/aliases/{alias}/history", RouteKind::kJson,
      Json<v1::GetAliasHistoryRequest, v1::GetAliasHistoryResponse>(
          api, &Api::GetAliasHistory, [](const RestRequest& r, v1::GetAliasHistoryRequest* m) {
            m->set_model(r.path.at("model"));
            m->set_alias(r.path.at("alias"));
            return Page(r, m);
          }));
  router.Add("GET", "/v1/events", RouteKind::kJson,
             Json<v1::ListEventsRequest, v1::ListEventsResponse>(
                 api, &Api::ListEvents, [](const RestRequest& r, v1::ListEventsRequest* m) {
                   int64_t after = 0, limit = 0;
                   absl::Status s = QueryInt(r, "afterSequence", &after);
                   if (s.ok()) s = QueryInt(r, "limit", &limit);
                   m->set_after_sequence(after);
                   m->set_limit(static_cast<int32_t>(std::clamp<int64_t>(limit, 0, 100000)));
                   return s;
                 }));

  router.Add(
      "POST", "/v1/tokens", RouteKind::kJson,
      Json<v1::CreateTokenRequest, v1::CreateTokenResponse>(api, &Api::CreateToken, Body, 201));
  router.Add("GET", "/v1/tokens", RouteKind::kJson,
             Json<v1::ListTokensRequest, v1::ListTokensResponse>(api, &Api::ListTokens,
                                                                 Page<v1::ListTokensRequest>));
  router.Add("POST", "/v1/tokens/{id}:revoke", RouteKind::kJson,
             Json<v1::RevokeTokenRequest, v1::ApiToken>(
                 api, &Api::RevokeToken, [](const RestRequest& r, v1::RevokeTokenRequest* m) {
                   m->set_id(r.path.at("id"));
                   return absl::OkStatus();
                 }));
  router.Add("POST", "/v1/enrollment-tokens", RouteKind::kJson,
             Json<v1::CreateEnrollmentTokenRequest, v1::CreateEnrollmentTokenResponse>(
                 api, &Api::CreateEnrollmentToken, Body, 201));
  router.Add("GET", "/v1/enrollment-tokens", RouteKind::kJson,
             Json<v1::ListEnrollmentTokensRequest, v1::ListEnrollmentTokensResponse>(
                 api, &Api::ListEnrollmentTokens, Page<v1::ListEnrollmentTokensRequest>));
  router.Add("POST", "/v1/enrollment-tokens/{id}:revoke", RouteKind::kJson,
             Json<v1::RevokeEnrollmentTokenRequest, v1::EnrollmentToken>(
                 api, &Api::RevokeEnrollmentToken,
                 [](const RestRequest& r, v1::RevokeEnrollmentTokenRequest* m) {
                   m->set_id(r.path.at("id"));
                   return absl::OkStatus();
                 }));
  router.Add("POST", "/v1/devices/{id}:rollback", RouteKind::kJson,
             Json<v1::RollbackDeviceRequest, v1::Assignment>(
                 api, &Api::RollbackDevice,
                 [](const RestRequest& r, v1::RollbackDeviceRequest* m) {
                   absl::Status s = Body(r, m);
                   m->set_id(r.path.at("id"));  // the path names the device, not the body
                   return s;
                 },
                 201));
  router.Add("POST", "/v1/assignments", RouteKind::kJson,
             Json<v1::AssignModelRequest, v1::Assignment>(api, &Api::AssignModel, Body, 201));
  router.Add(
      "GET", "/v1/assignments", RouteKind::kJson,
      Json<v1::ListAssignmentsRequest, v1::ListAssignmentsResponse>(
          api, &Api::ListAssignments, [](const RestRequest& r, v1::ListAssignmentsRequest* m) {
            m->set_model(Query(r, "model"));
            return Page(r, m);
          }));
  router.Add("GET", "/v1/devices", RouteKind::kJson,
             Json<v1::ListDevicesRequest, v1::ListDevicesResponse>(
                 api, &Api::ListDevices, [](const RestRequest& r, v1::ListDevicesRequest* m) {
                   m->set_selector(Query(r, "selector"));
                   return Page(r, m);
                 }));
  router.Add("GET", "/v1/devices/{id}/telemetry", RouteKind::kJson,
             Json<v1::GetDeviceTelemetryRequest, v1::DeviceTelemetryReport>(
                 api, &Api::GetDeviceTelemetry,
                 [](const RestRequest& r, v1::GetDeviceTelemetryRequest* m) {
                   m->set_device_id(r.path.at("id"));
                   int64_t from = 0, to = 0, limit = 0;
                   RETURN_IF_ERROR(QueryTime(r, "from", &from));
                   RETURN_IF_ERROR(QueryTime(r, "to", &to));
                   RETURN_IF_ERROR(QueryInt(r, "limit", &limit));
                   m->set_from_ms(from);
                   m->set_to_ms(to);
                   m->set_limit(static_cast<int32_t>(std::clamp<int64_t>(limit, -1, 1000)));
                   return absl::OkStatus();
                 }));
  router.Add(
      "GET", "/v1/models/{model}/telemetry", RouteKind::kJson,
      Json<v1::GetModelTelemetryRequest, v1::ModelTelemetry>(
          api, &Api::GetModelTelemetry, [](const RestRequest& r, v1::GetModelTelemetryRequest* m) {
            m->set_model(r.path.at("model"));
            int64_t version = 0, from = 0, to = 0, step = 0;
            RETURN_IF_ERROR(QueryInt(r, "version", &version));
            RETURN_IF_ERROR(QueryTime(r, "from", &from));
            RETURN_IF_ERROR(QueryTime(r, "to", &to));
            RETURN_IF_ERROR(QuerySeconds(r, "step", &step));
            m->set_version(version);
            m->set_cohort(Query(r, "cohort"));
            m->set_from_ms(from);
            m->set_to_ms(to);
            m->set_step_seconds(step);
            return absl::OkStatus();
          }));
  router.Add(
      "GET", "/v1/models/{model}/drift-settings", RouteKind::kJson,
      Json<v1::GetDriftSettingsRequest, v1::ModelDriftSettings>(
          api, &Api::GetDriftSettings, [](const RestRequest& r, v1::GetDriftSettingsRequest* m) {
            m->set_model(r.path.at("model"));
            return absl::OkStatus();
          }));
  // The body is the overrides (a DriftSettings); fields left out keep the server's defaults.
  router.Add(
      "PUT", "/v1/models/{model}/drift-settings", RouteKind::kJson,
      Json<v1::SetDriftSettingsRequest, v1::ModelDriftSettings>(
          api, &Api::SetDriftSettings, [](const RestRequest& r, v1::SetDriftSettingsRequest* m) {
            RETURN_IF_ERROR(Body(r, m->mutable_overrides()));
            m->set_model(r.path.at("model"));
            return absl::OkStatus();
          }));
  router.Add("GET", "/v1/devices/{id}", RouteKind::kJson,
             Json<v1::GetDeviceRequest, v1::Device>(
                 api, &Api::GetDevice, [](const RestRequest& r, v1::GetDeviceRequest* m) {
                   m->set_id(r.path.at("id"));
                   return absl::OkStatus();
                 }));
  router.Add("PATCH", "/v1/devices/{id}", RouteKind::kJson,
             Json<v1::UpdateDeviceRequest, v1::Device>(
                 api, &Api::UpdateDevice, [](const RestRequest& r, v1::UpdateDeviceRequest* m) {
                   absl::Status s = Body(r, m);
                   if (!s.ok()) return s;
                   m->set_id(r.path.at("id"));
                   return absl::OkStatus();
                 }));
  router.Add("POST", "/v1/devices/{id}:decommission", RouteKind::kJson,
             Json<v1::DecommissionDeviceRequest, v1::Device>(
                 api, &Api::DecommissionDevice,
                 [](const RestRequest& r, v1::DecommissionDeviceRequest* m) {
                   m->set_id(r.path.at("id"));
                   return absl::OkStatus();
                 }));
  // Rollouts: the create body is the RolloutSpec; actions take an optional {reason}.
  router.Add("POST", "/v1/rollouts", RouteKind::kJson,
             Json<v1::RolloutSpec, v1::Rollout>(api, &Api::CreateRollout, Body, 201));
  router.Add("GET", "/v1/rollouts", RouteKind::kJson,
             Json<v1::ListRolloutsRequest, v1::ListRolloutsResponse>(
                 api, &Api::ListRollouts, [](const RestRequest& r, v1::ListRolloutsRequest* m) {
                   m->set_model(Query(r, "model"));
                   m->set_active_only(Query(r, "active") == "true" || Query(r, "active") == "1");
                   return Page(r, m);
                 }));
  router.Add("GET", "/v1/rollouts/{id}", RouteKind::kJson,
             Json<v1::GetRolloutRequest, v1::Rollout>(
                 api, &Api::GetRollout, [](const RestRequest& r, v1::GetRolloutRequest* m) {
                   ASSIGN_OR_RETURN(int64_t id, PathId(r, "id"));
                   m->set_id(id);
                   return absl::OkStatus();
                 }));
  router.Add("GET", "/v1/rollouts/{id}/events", RouteKind::kJson,
             Json<v1::ListRolloutEventsRequest, v1::ListRolloutEventsResponse>(
                 api, &Api::ListRolloutEvents,
                 [](const RestRequest& r, v1::ListRolloutEventsRequest* m) {
                   ASSIGN_OR_RETURN(int64_t id, PathId(r, "id"));
                   int64_t after = 0, size = 0;
                   RETURN_IF_ERROR(QueryInt(r, "after", &after));
                   RETURN_IF_ERROR(QueryInt(r, "pageSize", &size));
                   m->set_id(id);
                   m->set_after(after);
                   m->set_page_size(static_cast<int32_t>(std::clamp<int64_t>(size, 0, 1000)));
                   return absl::OkStatus();
                 }));
  using RolloutAction = absl::StatusOr<v1::Rollout> (Api::*)(const Principal&,
                                                             const v1::RolloutActionRequest&);
  for (const auto& [verb, method] : std::vector<std::pair<std::string, RolloutAction>>{
           {"pause", &Api::PauseRollout},
           {"resume", &Api::ResumeRollout},
           {"abort", &Api::AbortRollout},
           {"promote", &Api::PromoteRollout}}) {
    router.Add("POST", absl::StrCat("/v1/rollouts/{id}:", verb), RouteKind::kJson,
               Json<v1::RolloutActionRequest, v1::Rollout>(
                   api, method, [](const RestRequest& r, v1::RolloutActionRequest* m) {
                     if (!r.body.empty()) RETURN_IF_ERROR(Body(r, m));
                     ASSIGN_OR_RETURN(int64_t id, PathId(r, "id"));
                     m->set_id(id);  // the path names the rollout, not the body
                     return absl::OkStatus();
                   }));
  }
  router.Add("GET", "/v1/ping", RouteKind::kJson,
             Json<v1::PingRequest, v1::PingResponse>(api, &Api::Ping, Body));
  return router;
}

}  // namespace edgeloop::server::rest
