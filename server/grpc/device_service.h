#pragma once

#include <atomic>

#include "edgeloop/v1/device.grpc.pb.h"
#include "fleet/assignments.h"
#include "fleet/device_registry.h"
#include "server/grpc/device_stream_limit.h"
#include "server/grpc/watch_hub.h"
#include "server/metrics.h"
#include "store/blob_store.h"
#include "telemetry/ingest.h"

namespace edgeloop::server::grpc_api {

struct DeviceServiceOptions {
  /// Watch and FetchModule streams one device may hold open at once.
  int streams_per_device = 4;
  WatchHubOptions watch;
};

/// edgeloop.v1.DeviceService, served on --device-listen over TLS. Enroll needs only a valid
/// enrollment token; every other call acts for the device named by the CN of the client
/// certificate the TLS handshake verified against the server CA, and for no other. Watch uses
/// gRPC's callback API (WatchHub), so waiting devices hold no thread; the other calls are short
/// or bounded by the server's thread quota.
class DeviceService final
    : public v1::DeviceService::WithCallbackMethod_Watch<v1::DeviceService::Service> {
 public:
  DeviceService(fleet::DeviceRegistry* devices, fleet::Assignments* assignments,
                store::BlobStore* blobs, telemetry::TelemetryIngest* telemetry,
                ServerMetrics* metrics, DeviceServiceOptions options);
  ~DeviceService() override;

  grpc::Status Enroll(grpc::ServerContext* c, const v1::EnrollRequest* r,
                      v1::EnrollResponse* out) override;
  grpc::Status Sync(grpc::ServerContext* c, const v1::SyncRequest* r,
                    v1::SyncResponse* out) override;
  grpc::Status Renew(grpc::ServerContext* c, const v1::RenewRequest* r,
                     v1::RenewResponse* out) override;
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(grpc::CallbackServerContext* c,
                                                  const v1::WatchRequest* r) override;
  grpc::Status FetchModule(grpc::ServerContext* c, const v1::FetchModuleRequest* r,
                           grpc::ServerWriter<v1::ModuleChunk>* writer) override;
  grpc::Status ReportTelemetry(grpc::ServerContext* c, const v1::ReportTelemetryRequest* r,
                               v1::ReportTelemetryResponse* out) override;

  /// Ends open streams promptly; call before shutting the gRPC server down.
  void Stop();

 private:
  fleet::DeviceRegistry& devices_;
  fleet::Assignments& assignments_;
  store::BlobStore& blobs_;
  telemetry::TelemetryIngest& telemetry_;
  ServerMetrics& metrics_;
  DeviceStreamLimit streams_;
  WatchHub watches_;
  std::atomic<bool> stopping_{false};
};

}  // namespace edgeloop::server::grpc_api
