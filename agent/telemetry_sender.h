#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <random>

#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/device_telemetry.h"
#include "common/clock.h"

namespace edgeloop::agent {

/// Sends the spool's closed windows to the server (ReportTelemetry) and deletes each one only
/// once the server has answered that it stored it (or refused it for good, which is logged).
/// Reports are bounded (kReportWindows windows, kReportBytes); a device back from an outage
/// empties its spool in as many reports as it takes, at the pace the server allows: a
/// refusal to take more (RESOURCE_EXHAUSTED) or an unreachable server backs off, with jitter.
/// Windows close on the same clock second on every device; each device sends a fixed random
/// `spread` after, so a fleet does not report all in one instant. Used by one thread.
class TelemetrySender {
 public:
  static constexpr int kReportWindows = 64;           // the server's kMaxReportWindows
  static constexpr int64_t kReportBytes = 512 << 10;  // the device port takes 1 MiB messages
  /// A window this large can never be sent (the port's limit, with room for the rest): it is
  /// dropped and counted, rather than blocking every window behind it.
  static constexpr int64_t kMaxWindowBytes = 960 << 10;

  struct Options {
    const Clock* clock = nullptr;
    absl::Duration max_backoff = absl::Seconds(60);
    absl::Duration spread = absl::Seconds(10);  // the device's delay is uniform in [0, spread)
  };
  TelemetrySender(const Options& options, DeviceTelemetry* telemetry,
                  std::function<std::shared_ptr<grpc::Channel>()> channel, AgentMetrics* metrics);

  /// Sends what is ready if it is time to; returns when to call again (InfiniteFuture when
  /// nothing waits: call again when windows close).
  absl::Time SendDue();

 private:
  /// One report; false when it failed (retry_at_ is set).
  bool SendBatch(const std::vector<v1::TelemetryWindow>& batch, int64_t dropped);
  absl::Duration Backoff();

  Options options_;
  DeviceTelemetry& telemetry_;
  std::function<std::shared_ptr<grpc::Channel>()> channel_;
  AgentMetrics& metrics_;
  std::mt19937_64 random_{std::random_device{}()};
  absl::Duration delay_;                         // this device's share of the spread
  absl::Time send_at_ = absl::InfiniteFuture();  // set when windows are first seen waiting
  absl::Time retry_at_ = absl::InfinitePast();   // after a failed report
  int failures_ = 0;
};

}  // namespace edgeloop::agent
