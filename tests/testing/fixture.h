#pragma once

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/proto_json.h"
#include "edgeloop/v1/device.pb.h"
#include "gtest/gtest.h"
#include "store/testing/postgres_cluster.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"

namespace edgeloop::tests {

/// Runs a real edgeloop-server for each test, on SQLite with file blobs ("sqlite") or on a
/// throwaway PostgreSQL database with blobs in PostgreSQL ("postgres").
class ServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    options_.data_dir = NewTempDir("edgeloop-it");
    if (GetParam() == "postgres") {
      auto url = store::testing::NewTestDatabase();
      ASSERT_TRUE(url.ok()) << url.status();
      options_.db = *url;
      options_.blobs = "postgresql";
    }
    options_.extra_flags = ExtraFlags();
    StartServer();
  }
  void TearDown() override {
    // A failed test shows what the server said (a crash, a refused request) last.
    if (HasFailure() && server_) {
      const std::string log = server_->log();
      std::cerr << "--- edgeloop-server log (last 8 KiB) ---\n"
                << log.substr(log.size() > 8192 ? log.size() - 8192 : 0) << "\n";
    }
    server_.reset();
    std::error_code ignored;  // an agent a test still holds may write into it until it stops
    std::filesystem::remove_all(options_.data_dir, ignored);
  }

  virtual std::vector<std::string> ExtraFlags() { return {"--max-upload-bytes", "3000000"}; }

  void StartServer() {
    server_ = std::make_unique<ServerProcess>(options_);
    absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
    admin_ = server_->admin_token();
    ASSERT_FALSE(admin_.empty());
  }

  /// Staged upload files anywhere under the data dir (none once uploads finished or failed).
  int StagedUploads() const {
    int n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(options_.data_dir)) {
      if (e.is_regular_file() && e.path().filename().string().rfind("upload-", 0) == 0) ++n;
    }
    return n;
  }

  /// A REST call as the admin; a failed connection is a test failure.
  HttpResponse Call(const std::string& method, const std::string& target,
                    const std::string& body = "") {
    auto r =
        HttpClient(server_->http_port())
            .Request(method, target, body, {{"Authorization", absl::StrCat("Bearer ", admin_)}});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResponse{};
  }

  /// Starts an agent enrolled with a fresh one-use token (with `token_labels`, a JSON object)
  /// in <data-dir>/agent; fails the test when it does not enroll.
  std::unique_ptr<AgentProcess> StartAgent(std::vector<std::string> extra_flags = {},
                                           const std::string& token_labels = "{}") {
    v1::CreateEnrollmentTokenResponse created;
    EXPECT_TRUE(ParseProtoJson(Call("POST", "/v1/enrollment-tokens",
                                    absl::StrCat(R"({"maxUses":1,"labels":)", token_labels, "}"))
                                   .body,
                               &created)
                    .ok());
    AgentProcess::Options o;
    o.server = server_->device_address();
    // The first agent's state is in <data-dir>/agent, the next ones' in agent-2, agent-3...
    ++agents_started_;
    o.state_dir = options_.data_dir + "/agent" +
                  (agents_started_ == 1 ? "" : absl::StrCat("-", agents_started_));
    o.enroll_token = created.secret();
    o.extra_flags = std::move(extra_flags);
    auto agent = std::make_unique<AgentProcess>(o);
    agent->Start();
    EXPECT_TRUE(agent->WaitEnrolled()) << agent->log();
    return agent;
  }

  ServerProcess::Options options_;
  std::unique_ptr<ServerProcess> server_;
  std::string admin_;
  int agents_started_ = 0;
};

inline std::string Bearer(const std::string& token) { return absl::StrCat("Bearer ", token); }

}  // namespace edgeloop::tests
