#include "server/grpc/registry_service.h"

#include "server/grpc/call_internal.h"

namespace edgeloop::server::grpc_api {

grpc::Status RegistryService::CreateModel(grpc::ServerContext* c, const v1::CreateModelRequest* r,
                                          v1::Model* out) {
  return Unary(api_, metrics_, "CreateModel", c, out,
               [&](const Principal& p) { return api_.CreateModel(p, *r); });
}
grpc::Status RegistryService::GetModel(grpc::ServerContext* c, const v1::GetModelRequest* r,
                                       v1::Model* out) {
  return Unary(api_, metrics_, "GetModel", c, out,
               [&](const Principal& p) { return api_.GetModel(p, *r); });
}
grpc::Status RegistryService::ListModels(grpc::ServerContext* c, const v1::ListModelsRequest* r,
                                         v1::ListModelsResponse* out) {
  return Unary(api_, metrics_, "ListModels", c, out,
               [&](const Principal& p) { return api_.ListModels(p, *r); });
}
grpc::Status RegistryService::CreateVersion(grpc::ServerContext* c,
                                            const v1::CreateVersionRequest* r,
                                            v1::ModelVersion* out) {
  return Unary(api_, metrics_, "CreateVersion", c, out,
               [&](const Principal& p) { return api_.CreateVersion(p, *r); });
}
grpc::Status RegistryService::GetVersion(grpc::ServerContext* c, const v1::GetVersionRequest* r,
                                         v1::ModelVersion* out) {
  return Unary(api_, metrics_, "GetVersion", c, out,
               [&](const Principal& p) { return api_.GetVersion(p, *r); });
}
grpc::Status RegistryService::ListVersions(grpc::ServerContext* c, const v1::ListVersionsRequest* r,
                                           v1::ListVersionsResponse* out) {
  return Unary(api_, metrics_, "ListVersions", c, out,
               [&](const Principal& p) { return api_.ListVersions(p, *r); });
}
grpc::Status RegistryService::SetAlias(grpc::ServerContext* c, const v1::SetAliasRequest* r,
                                       v1::Alias* out) {
  return Unary(api_, metrics_, "SetAlias", c, out,
               [&](const Principal& p) { return api_.SetAlias(p, *r); });
}
grpc::Status RegistryService::GetAlias(grpc::ServerContext* c, const v1::GetAliasRequest* r,
                                       v1::Alias* out) {
  return Unary(api_, metrics_, "GetAlias", c, out,
               [&](const Principal& p) { return api_.GetAlias(p, *r); });
}
grpc::Status RegistryService::GetAliasHistory(grpc::ServerContext* c,
                                              const v1::GetAliasHistoryRequest* r,
                                              v1::GetAliasHistoryResponse* out) {
  return Unary(api_, metrics_, "GetAliasHistory", c, out,
               [&](const Principal& p) { return api_.GetAliasHistory(p, *r); });
}
grpc::Status RegistryService::ListArtifacts(grpc::ServerContext* c,
                                            const v1::ListArtifactsRequest* r,
                                            v1::ListArtifactsResponse* out) {
  return Unary(api_, metrics_, "ListArtifacts", c, out,
               [&](const Principal& p) { return api_.ListArtifacts(p, *r); });
}

grpc::Status RegistryService::ListEvents(grpc::ServerContext* c, const v1::ListEventsRequest* r,
                                         v1::ListEventsResponse* out) {
  return Unary(api_, metrics_, "ListEvents", c, out,
               [&](const Principal& p) { return api_.ListEvents(p, *r); });
}

grpc::Status RegistryService::UploadBlob(grpc::ServerContext* c,
                                         grpc::ServerReader<v1::UploadBlobRequest>* reader,
                                         v1::Blob* out) {
  return Unary(
      api_, metrics_, "UploadBlob", c, out, [&](const Principal& p) -> absl::StatusOr<v1::Blob> {
        v1::UploadBlobRequest message;
        if (!reader->Read(&message))
          return absl::InvalidArgumentError("upload stream carried no message");
        v1::UploadBlobHeader header;
        if (message.has_header()) header = message.header();
        ASSIGN_OR_RETURN(auto writer,
                         api_.BeginBlobUpload(p, header.size() > 0 ? header.size() : -1));
        if (message.part_case() == v1::UploadBlobRequest::kChunk)
          RETURN_IF_ERROR(writer->Write(message.chunk()));
        while (reader->Read(&message)) {
          if (message.part_case() != v1::UploadBlobRequest::kChunk) {
            return absl::InvalidArgumentError("only the first upload message may carry a header");
          }
          RETURN_IF_ERROR(writer->Write(message.chunk()));
        }
        if (c->IsCancelled()) return absl::CancelledError("upload cancelled by the client");
        return api_.FinishBlobUpload(*writer, header.expected_digest());
      });
}

grpc::Status RegistryService::DownloadBlob(grpc::ServerContext* c, const v1::DownloadBlobRequest* r,
                                           grpc::ServerWriter<v1::BlobChunk>* writer) {
  v1::Blob done;  // Unary wants a response slot; the stream carries the data
  return Unary(api_, metrics_, "DownloadBlob", c, &done,
               [&](const Principal& p) -> absl::StatusOr<v1::Blob> {
                 ASSIGN_OR_RETURN(auto reader, api_.OpenBlob(p, r->digest()));
                 if (r->offset() < 0 || r->offset() > reader->size()) {
                   return absl::OutOfRangeError("offset is outside the blob");
                 }
                 v1::BlobChunk chunk;
                 std::string data;
                 for (int64_t offset = r->offset(); offset < reader->size();) {
                   RETURN_IF_ERROR(reader->ReadAt(offset, 256 * 1024, &data));
                   if (data.empty()) return absl::DataLossError("blob ended early");
                   chunk.set_offset(offset);
                   offset += static_cast<int64_t>(data.size());
                   chunk.set_data(std::move(data));
                   if (!writer->Write(chunk))
                     return absl::CancelledError("client went away during download");
                 }
                 return v1::Blob();
               });
}

}  // namespace edgeloop::server::grpc_api
