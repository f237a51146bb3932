#pragma once

// The fixture for tests where a real agent serves what a real server compiled and assigned.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/client/local_client.h"
#include "common/proto_json.h"
#include "edgeloop/v1/device.pb.h"
#include "edgeloop/v1/registry.pb.h"
#include "tests/testing/fixture.h"

namespace edgeloop::tests {

class ServingTest : public ServerTest {
 protected:
  std::vector<std::string> ExtraFlags() override {
    // Syncs every second, so convergence does not wait on Watch alone.
    return {"--sync-interval-seconds", "1"};
  }

  /// Uploads `bytes` as a blob; its digest.
  std::string Upload(const std::string& bytes) {
    v1::Blob blob;
    EXPECT_TRUE(ParseProtoJson(Call("POST", "/v1/blobs", bytes).body, &blob).ok());
    return blob.digest();
  }

  /// Pushes `onnx` (with `more_fields` of the request, e.g. a validation set) as the next
  /// version of `model` and waits until it is compiled; its number (0 when it failed).
  int64_t Push(const std::string& model, const std::string& onnx,
               const std::string& more_fields = "") {
    v1::ModelVersion v;
    EXPECT_TRUE(ParseProtoJson(
                    Call("POST", absl::StrCat("/v1/models/", model, "/versions"),
                         absl::StrCat(R"({"onnxDigest":")", Upload(onnx), "\"", more_fields, "}"))
                        .body,
                    &v)
                    .ok());
    v1::ModelVersion settled;
    const bool done = Eventually(
        [&] {
          settled = v1::ModelVersion();
          ParseProtoJson(
              Call("GET", absl::StrCat("/v1/models/", model, "/versions/", v.version())).body,
              &settled)
              .IgnoreError();
          return settled.status() == v1::READY || settled.status() == v1::FAILED;
        },
        absl::Seconds(60));
    EXPECT_TRUE(done) << "version never became ready";
    EXPECT_NE(settled.status(), v1::FAILED) << settled.status_message();
    return settled.status() == v1::READY ? v.version() : 0;
  }

  void Assign(const std::string& model, int64_t version, const std::string& device) {
    HttpResponse r = Call("POST", "/v1/assignments",
                          absl::StrCat(R"({"model":")", model, R"(","deviceId":")", device,
                                       R"(","version":")", version, "\"}"));
    ASSERT_EQ(r.status, 201) << r.body;
  }

  // The reason the device reports for failing `version` (waits up to 30 s; empty if none).
  std::string FailureReported(const std::string& device, int64_t version) {
    std::string reason;
    Eventually(
        [&] {
          v1::Device d;
          ParseProtoJson(Call("GET", "/v1/devices/" + device).body, &d).IgnoreError();
          for (const auto& m : d.state().modules()) {
            if (m.state() == "failed" && m.module().version() == version) reason = m.message();
          }
          return !reason.empty();
        },
        absl::Seconds(30));
    return reason;
  }

  // Waits until the agent serves `version` of `model` (up to 30 s).
  bool WaitServing(const client::LocalClient& client, const std::string& model, int64_t version) {
    return Eventually(
        [&] {
          auto models = client.ListModels();
          if (!models.ok()) return false;
          for (const auto& m : models->models()) {
            if (m.name() == model && m.version() == version) return true;
          }
          return false;
        },
        absl::Seconds(30));
  }
};

/// A deterministic input of `n` values in [-scale, scale].
inline std::vector<float> Input(int n, float scale) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(scale * static_cast<float>((i * 7) % 11 - 5) / 5.0f);
  return v;
}

}  // namespace edgeloop::tests
