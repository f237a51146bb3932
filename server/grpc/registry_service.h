#pragma once

#include "edgeloop/v1/registry.grpc.pb.h"
#include "server/api.h"
#include "server/metrics.h"

namespace edgeloop::server::grpc_api {

/// edgeloop.v1.RegistryService over the shared Api.
class RegistryService final : public v1::RegistryService::Service {
 public:
  RegistryService(Api* api, ServerMetrics* metrics) : api_(*api), metrics_(*metrics) {}

  grpc::Status CreateModel(grpc::ServerContext* c, const v1::CreateModelRequest* r,
                           v1::Model* out) override;
  grpc::Status GetModel(grpc::ServerContext* c, const v1::GetModelRequest* r,
                        v1::Model* out) override;
  grpc::Status ListModels(grpc::ServerContext* c, const v1::ListModelsRequest* r,
                          v1::ListModelsResponse* out) override;
  grpc::Status CreateVersion(grpc::ServerContext* c, const v1::CreateVersionRequest* r,
                             v1::ModelVersion* out) override;
  grpc::Status GetVersion(grpc::ServerContext* c, const v1::GetVersionRequest* r,
                          v1::ModelVersion* out) override;
  grpc::Status ListVersions(grpc::ServerContext* c, const v1::ListVersionsRequest* r,
                            v1::ListVersionsResponse* out) override;
  grpc::Status SetAlias(grpc::ServerContext* c, const v1::SetAliasRequest* r,
                        v1::Alias* out) override;
  grpc::Status GetAlias(grpc::ServerContext* c, const v1::GetAliasRequest* r,
                        v1::Alias* out) override;
  grpc::Status GetAliasHistory(grpc::ServerContext* c, const v1::GetAliasHistoryRequest* r,
                               v1::GetAliasHistoryResponse* out) override;
  grpc::Status ListArtifacts(grpc::ServerContext* c, const v1::ListArtifactsRequest* r,
                             v1::ListArtifactsResponse* out) override;
  grpc::Status ListEvents(grpc::ServerContext* c, const v1::ListEventsRequest* r,
                          v1::ListEventsResponse* out) override;
  grpc::Status UploadBlob(grpc::ServerContext* c, grpc::ServerReader<v1::UploadBlobRequest>* reader,
                          v1::Blob* out) override;
  grpc::Status DownloadBlob(grpc::ServerContext* c, const v1::DownloadBlobRequest* r,
                            grpc::ServerWriter<v1::BlobChunk>* writer) override;

 private:
  Api& api_;
  ServerMetrics& metrics_;
};

}  // namespace edgeloop::server::grpc_api
