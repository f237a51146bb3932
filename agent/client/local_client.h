#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "edgeloop/v1/local.grpc.pb.h"

namespace edgeloop::client {

namespace lv1 = ::edgeloop::local::v1;

/// A float32 tensor as applications hold it.
struct FloatTensor {
  std::string name;  // empty: by position, in the model's input order
  std::vector<int64_t> dims;
  std::vector<float> values;  // row-major
};

struct Prediction {
  std::string request_id;  // give it to Feedback() once the true label is known
  std::vector<FloatTensor> outputs;
  int64_t model_version = 0;
  std::string module_digest;
};

/// The client side of the agent's local API (edgeloop.local.v1.LocalInference) for
/// applications on the device. Thread-safe: one client can serve many threads.
class LocalClient {
 public:
  /// Connects to the agent's socket (`--socket`, default <state-dir>/agent.sock).
  explicit LocalClient(const std::string& socket_path,
                       absl::Duration timeout = absl::Seconds(10));

  absl::StatusOr<Prediction> Predict(const std::string& model,
                                     const std::vector<FloatTensor>& inputs) const;
  /// Whether the prediction `request_id` was right about `label`.
  absl::StatusOr<bool> Feedback(const std::string& request_id, int64_t label) const;
  absl::StatusOr<lv1::ListModelsResponse> ListModels() const;
  absl::StatusOr<lv1::HealthResponse> Health() const;

 private:
  std::unique_ptr<grpc::ClientContext> Context() const;
  std::unique_ptr<lv1::LocalInference::Stub> stub_;
  absl::Duration timeout_;
};

}  // namespace edgeloop::client
