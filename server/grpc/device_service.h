#pragma once

#include <atomic>

#include "edgeloop/v1/device.grpc.pb.h"
#include "fleet/assignments.h"
#include "fleet/device_registry.h"
#include "store/blob_store.h"
#include "server/metrics.h"

namespace edgeloop::server::grpc_api {

/// edgeloop.v1.DeviceService, served on --device-listen over TLS. Enroll needs only a valid
/// enrollment token; every other call acts for the device named by the CN of the client
/// certificate the TLS handshake verified against the server CA, and for no other.
class DeviceService final : public v1::DeviceService::Service {
 public:
  DeviceService(fleet::DeviceRegistry* devices, fleet::Assignments* assignments,
                store::BlobStore* blobs, ServerMetrics* metrics)
      : devices_(*devices), assignments_(*assignments), blobs_(*blobs), metrics_(*metrics) {}

  grpc::Status Enroll(grpc::ServerContext* c, const v1::EnrollRequest* r,
                      v1::EnrollResponse* out) override;
  grpc::Status Sync(grpc::ServerContext* c, const v1::SyncRequest* r,
                    v1::SyncResponse* out) override;
  grpc::Status Renew(grpc::ServerContext* c, const v1::RenewRequest* r,
                     v1::RenewResponse* out) override;
  grpc::Status Watch(grpc::ServerContext* c, const v1::WatchRequest* r,
                     grpc::ServerWriter<v1::WatchEvent>* writer) override;
  grpc::Status FetchModule(grpc::ServerContext* c, const v1::FetchModuleRequest* r,
                           grpc::ServerWriter<v1::ModuleChunk>* writer) override;

  /// Ends open Watch streams promptly; call before shutting the gRPC server down.
  void Stop();

 private:
  fleet::DeviceRegistry& devices_;
  fleet::Assignments& assignments_;
  store::BlobStore& blobs_;
  ServerMetrics& metrics_;
  std::atomic<bool> stopping_{false};
};

}  // namespace edgeloop::server::grpc_api
