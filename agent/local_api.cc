#include "agent/local_api.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace edgeloop::agent {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return s.ok() ? grpc::Status::OK
                : grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

template <typename Resp>
grpc::Status Answer(absl::StatusOr<Resp> result, Resp* out) {
  if (result.ok()) *out = std::move(*result);
  return ToGrpc(result.status());
}

}  // namespace

class LocalApi::Service final : public lv1::LocalInference::Service {
 public:
  Service(ModelHost* host, std::function<void(lv1::HealthResponse*)> health)
      : host_(*host), health_(std::move(health)) {}

  grpc::Status Predict(grpc::ServerContext*, const lv1::PredictRequest* r,
                       lv1::PredictResponse* out) override {
    return Answer(host_.Predict(*r), out);
  }
  grpc::Status Feedback(grpc::ServerContext*, const lv1::FeedbackRequest* r,
                        lv1::FeedbackResponse* out) override {
    return Answer(host_.Feedback(*r), out);
  }
  grpc::Status ListModels(grpc::ServerContext*, const lv1::ListModelsRequest*,
                          lv1::ListModelsResponse* out) override {
    *out = host_.List();
    return grpc::Status::OK;
  }
  grpc::Status Health(grpc::ServerContext*, const lv1::HealthRequest*,
                      lv1::HealthResponse* out) override {
    out->set_serving(!host_.LoadedModels().empty());
    if (health_) health_(out);
    return grpc::Status::OK;
  }

 private:
  ModelHost& host_;
  std::function<void(lv1::HealthResponse*)> health_;
};

absl::StatusOr<std::unique_ptr<LocalApi>> LocalApi::Start(
    const std::string& socket_path, ModelHost* host,
    std::function<void(lv1::HealthResponse*)> health) {
  std::unique_ptr<LocalApi> api(new LocalApi());
  api->socket_path_ = socket_path;
  api->service_ = std::make_unique<Service>(host, std::move(health));
  ::unlink(socket_path.c_str());  // a socket left by a killed agent would make bind fail
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", socket_path), grpc::InsecureServerCredentials());
  builder.RegisterService(api->service_.get());
  builder.SetMaxReceiveMessageSize(64 << 20);  // images and batches of features
  api->server_ = builder.BuildAndStart();
  if (api->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on unix:", socket_path));
  }
  if (::chmod(socket_path.c_str(), 0660) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", socket_path), errno);
  }
  return api;
}

LocalApi::~LocalApi() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ::unlink(socket_path_.c_str());
}

}  // namespace edgeloop::agent
