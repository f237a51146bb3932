#include "agent/client/local_client.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace edgeloop::client {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return s.ok() ? absl::OkStatus()
                : absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace

LocalClient::LocalClient(const std::string& socket_path, absl::Duration timeout)
    : stub_(lv1::LocalInference::NewStub(grpc::CreateChannel(
          absl::StrCat("unix:", socket_path), grpc::InsecureChannelCredentials()))),
      timeout_(timeout) {}

std::unique_ptr<grpc::ClientContext> LocalClient::Context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  return context;
}

absl::StatusOr<Prediction> LocalClient::Predict(const std::string& model,
                                                const std::vector<FloatTensor>& inputs) const {
  lv1::PredictRequest request;
  request.set_model(model);
  for (const FloatTensor& in : inputs) {
    lv1::Tensor* t = request.add_inputs();
    t->set_name(in.name);
    t->set_dtype(lv1::FLOAT32);
    for (int64_t d : in.dims) t->add_dims(d);
    t->set_data(reinterpret_cast<const char*>(in.values.data()), in.values.size() * sizeof(float));
  }
  lv1::PredictResponse response;
  if (absl::Status s = FromGrpc(stub_->Predict(Context().get(), request, &response)); !s.ok())
    return s;
  Prediction p;
  p.request_id = response.request_id();
  p.model_version = response.model_version();
  p.module_digest = response.module_digest();
  for (const lv1::Tensor& t : response.outputs()) {
    FloatTensor out;
    out.name = t.name();
    out.dims.assign(t.dims().begin(), t.dims().end());
    out.values.resize(t.data().size() / sizeof(float));
    std::memcpy(out.values.data(), t.data().data(), out.values.size() * sizeof(float));
    p.outputs.push_back(std::move(out));
  }
  return p;
}

absl::StatusOr<bool> LocalClient::Feedback(const std::string& request_id, int64_t label) const {
  lv1::FeedbackRequest request;
  request.set_request_id(request_id);
  request.set_label(label);
  lv1::FeedbackResponse response;
  if (absl::Status s = FromGrpc(stub_->Feedback(Context().get(), request, &response)); !s.ok())
    return s;
  return response.correct();
}

absl::StatusOr<lv1::ListModelsResponse> LocalClient::ListModels() const {
  lv1::ListModelsResponse response;
  if (absl::Status s = FromGrpc(stub_->ListModels(Context().get(), {}, &response)); !s.ok())
    return s;
  return response;
}

absl::StatusOr<lv1::HealthResponse> LocalClient::Health() const {
  lv1::HealthResponse response;
  if (absl::Status s = FromGrpc(stub_->Health(Context().get(), {}, &response)); !s.ok())
    return s;
  return response;
}

}  // namespace edgeloop::client
