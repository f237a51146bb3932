#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/agent_options.h"
#include "agent/credentials.h"
#include "agent/device_telemetry.h"
#include "agent/local_api.h"
#include "agent/metrics_endpoint.h"
#include "agent/model_host.h"
#include "agent/module_manager.h"
#include "agent/telemetry_sender.h"
#include "edgeloop/v1/device.grpc.pb.h"

namespace edgeloop::agent {

/// The agent process: enrolls once (token → key + certificate kept in the state dir), then
/// keeps the device in step with the server: Sync on the interval the server sets, at once
/// when Watch says the desired state changed, with capped exponential back-off while the
/// server is unreachable, renewing its certificate before it expires. Everything it must
/// remember across restarts is in the state dir, written atomically.
class Agent {
 public:
  static absl::StatusOr<std::unique_ptr<Agent>> Create(const AgentOptions& options);
  ~Agent();

  /// Runs until Stop(). Returns an error only for what retrying cannot fix: not enrolled and
  /// no token, a refused token, a server that is not the one the token pins.
  absl::Status Run();
  /// Thread-safe; makes Run return promptly.
  void Stop();

 private:
  explicit Agent(const AgentOptions& options);
  absl::Status SyncOnce();
  /// Records the desired state (from "sync" or "watch") and brings the modules to it; true
  /// when what runs changed.
  absl::StatusOr<bool> ApplyDesired(const v1::SyncResponse& desired, const char* source);
  /// Installs the state Watch pushed last, if newer; sets `sync_at` to now to report a change.
  absl::Status ApplyPushed(absl::Time* sync_at);
  void WatchLoop();
  /// Closes telemetry windows as they end (and sends them, when the server is reachable).
  void TelemetryLoop();
  /// Sleeps until `*until`, a push, a sync request (which moves `*until` to now) or Stop();
  /// false when stopping.
  bool Wait(absl::Time* until);
  absl::Duration Backoff();
  /// Streams a module from the server into `sink` (ModuleStore's fetcher).
  absl::Status FetchModule(const std::string& digest, int64_t offset,
                           const ModuleStore::ChunkSink& sink);

  AgentOptions options_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable wake_;
  bool sync_requested_ = false;
  std::optional<v1::SyncResponse> pushed_;  // the newest state Watch pushed, not applied yet
  std::mt19937_64 random_{std::random_device{}()};
  int failures_ = 0;
  absl::Time started_;  // options_.clock
  AgentMetrics metrics_;
  Credentials credentials_;

  std::unique_ptr<grpc::ClientContext> watch_context_;  // guarded by mu_, for cancellation
  grpc::ClientContext* fetch_context_ = nullptr;        // guarded by mu_, for cancellation
  std::thread watch_thread_;
  std::thread telemetry_thread_;

  v1::HardwareProfile profile_;
  std::string profile_hash_;
  absl::Time profile_read_ = absl::InfinitePast();
  bool send_profile_ = true;
  absl::Duration next_interval_ = absl::Seconds(30);
  std::atomic<int64_t> desired_generation_{0};

  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;

  // Serving: the models, what keeps them in line with the desired state, the local API.
  ShadowRunner shadow_;  // before host_, which offers it calls
  ModelHost host_;
  std::unique_ptr<ModuleManager> modules_;
  std::unique_ptr<DeviceTelemetry> telemetry_;
  std::unique_ptr<TelemetrySender> sender_;  // the telemetry thread's
  std::unique_ptr<LocalApi> local_api_;
};

}  // namespace edgeloop::agent
