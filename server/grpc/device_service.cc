#include "server/grpc/device_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status.h"
#include "server/grpc/call_internal.h"

namespace edgeloop::server::grpc_api {
namespace {

/// The device id the verified client certificate names, or UNAUTHENTICATED.
absl::StatusOr<std::string> PeerDeviceId(const grpc::ServerContextBase& context) {
  auto auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError(
        "this call needs the device's client certificate (enroll first)");
  }
  auto names = auth->FindPropertyValues("x509_common_name");
  if (names.empty()) return absl::UnauthenticatedError("client certificate has no common name");
  return std::string(names[0].data(), names[0].size());
}

/// Records metrics and a log line for one device call and maps its status.
grpc::Status Finish(ServerMetrics& metrics, const char* method, absl::Time start,
                    const absl::Status& status, absl::string_view device_id) {
  const absl::Duration elapsed = absl::Now() - start;
  metrics.ObserveGrpc(method, StatusCodeName(status.code()), elapsed);
  if (!status.ok()) {
    Log(HttpStatusFor(status) >= 500 ? LogLevel::kWarning : LogLevel::kInfo, "device call refused",
        {{"method", method},
         {"device", device_id},
         {"code", StatusCodeName(status.code())},
         {"error", std::string(status.message())}});
  }
  return ToGrpcStatus(status);
}

template <typename Resp, typename Call>
grpc::Status AsDevice(ServerMetrics& metrics, const char* method, grpc::ServerContext* context,
                      Resp* out, Call call) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> id = PeerDeviceId(*context);
  absl::Status status = id.status();
  if (id.ok()) {
    auto result = call(*id);
    status = result.status();
    if (result.ok()) *out = std::move(*result);
  }
  return Finish(metrics, method, start, status, id.ok() ? *id : "");
}

}  // namespace

DeviceService::DeviceService(fleet::DeviceRegistry* devices, fleet::Assignments* assignments,
                             store::BlobStore* blobs, telemetry::TelemetryIngest* telemetry,
                             ServerMetrics* metrics, DeviceServiceOptions options)
    : devices_(*devices),
      assignments_(*assignments),
      blobs_(*blobs),
      telemetry_(*telemetry),
      metrics_(*metrics),
      streams_(options.streams_per_device),
      watches_(devices, metrics, &streams_, options.watch) {
  devices_.SetChangeListener([this](absl::string_view id) { watches_.Notify(id); });
}

DeviceService::~DeviceService() { devices_.SetChangeListener(nullptr); }

grpc::Status DeviceService::Enroll(grpc::ServerContext*, const v1::EnrollRequest* r,
                                   v1::EnrollResponse* out) {
  const absl::Time start = absl::Now();
  auto result = devices_.Enroll(*r);
  if (result.ok()) {
    *out = std::move(*result);
    Log(LogLevel::kInfo, "device enrolled",
        {{"device", out->device_id()}, {"serial", r->serial()}});
  }
  return Finish(metrics_, "device.Enroll", start, result.status(), "");
}

grpc::Status DeviceService::Sync(grpc::ServerContext* c, const v1::SyncRequest* r,
                                 v1::SyncResponse* out) {
  return AsDevice(metrics_, "device.Sync", c, out,
                  [&](const std::string& id) { return devices_.Sync(id, *r); });
}

grpc::Status DeviceService::Renew(grpc::ServerContext* c, const v1::RenewRequest* r,
                                  v1::RenewResponse* out) {
  return AsDevice(metrics_, "device.Renew", c, out,
                  [&](const std::string& id) { return devices_.Renew(id, *r); });
}

grpc::Status DeviceService::ReportTelemetry(grpc::ServerContext* c,
                                            const v1::ReportTelemetryRequest* r,
                                            v1::ReportTelemetryResponse* out) {
  return AsDevice(metrics_, "device.ReportTelemetry", c, out,
                  // Refuses a decommissioned device, whose certificate verifies until it expires.
                  [&](const std::string& id) { return telemetry_.Report(id, *r); });
}

grpc::ServerWriteReactor<v1::WatchEvent>* DeviceService::Watch(grpc::CallbackServerContext* c,
                                                               const v1::WatchRequest* r) {
  absl::StatusOr<std::string> id = PeerDeviceId(*c);
  if (!id.ok()) {
    Finish(metrics_, "device.Watch", absl::Now(), id.status(), "");
    return WatchHub::Refuse(id.status());
  }
  return watches_.Open(*id, r->known_generation());
}

grpc::Status DeviceService::FetchModule(grpc::ServerContext* c, const v1::FetchModuleRequest* r,
                                        grpc::ServerWriter<v1::ModuleChunk>* writer) {
  v1::ModuleChunk ignored;
  return AsDevice(
      metrics_, "device.FetchModule", c, &ignored,
      [&](const std::string& id) -> absl::StatusOr<v1::ModuleChunk> {
        RETURN_IF_ERROR(devices_.CheckActive(id));
        std::unique_ptr<DeviceStreamLimit::Slot> slot = streams_.Acquire(id);
        if (slot == nullptr) {
          return absl::ResourceExhaustedError(absl::StrCat("device \"", id, "\" already has ",
                                                           streams_.per_device(), " streams open"));
        }
        ASSIGN_OR_RETURN(bool is_module, assignments_.IsModule(r->digest()));
        if (!is_module) {
          return absl::NotFoundError(absl::StrCat("no module ", r->digest().substr(0, 80),
                                                  " (only built modules can "
                                                  "be fetched)"));
        }
        ASSIGN_OR_RETURN(std::unique_ptr<store::BlobReader> reader, blobs_.Open(r->digest()));
        const int64_t size = reader->size();
        if (r->offset() < 0 || r->offset() > size) {
          return absl::OutOfRangeError(
              absl::StrCat("offset ", r->offset(), " is outside the module (", size, " bytes)"));
        }
        constexpr size_t kChunk = 64 * 1024;
        v1::ModuleChunk chunk;
        chunk.set_size(size);
        int64_t at = r->offset();
        do {
          std::string* data = chunk.mutable_data();
          RETURN_IF_ERROR(reader->ReadAt(at, kChunk, data));
          chunk.set_offset(at);
          // A device that went away ends the stream; it resumes from what it has.
          if (c->IsCancelled() || !writer->Write(chunk)) break;
          at += static_cast<int64_t>(data->size());
        } while (at < size && !stopping_);
        return v1::ModuleChunk();
      });
}

void DeviceService::Stop() {
  stopping_ = true;
  watches_.Stop();
}

}  // namespace edgeloop::server::grpc_api
