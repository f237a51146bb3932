#include "agent/telemetry_sender.h"

#include "absl/strings/str_cat.h"
#include "agent/device_call.h"
#include "common/logging.h"
#include "common/telemetry_window.h"
#include "edgeloop/v1/device.grpc.pb.h"

namespace edgeloop::agent {

TelemetrySender::TelemetrySender(const Options& options, DeviceTelemetry* telemetry,
                                 std::function<std::shared_ptr<grpc::Channel>()> channel,
                                 AgentMetrics* metrics)
    : options_(options), telemetry_(*telemetry), channel_(std::move(channel)), metrics_(*metrics) {
  delay_ = options.spread <= absl::ZeroDuration()
               ? absl::ZeroDuration()
               : options.spread * std::uniform_real_distribution<double>(0, 1)(random_);
}

absl::Time TelemetrySender::SendDue() {
  const absl::Time now = options_.clock->Now();
  if (now < retry_at_) return retry_at_;
  if (send_at_ != absl::InfiniteFuture() && now < send_at_) return send_at_;
  TelemetrySpool& spool = telemetry_.spool();
  if (spool.windows() == 0 && spool.dropped() == 0) {
    send_at_ = absl::InfiniteFuture();
    return send_at_;
  }
  if (send_at_ == absl::InfiniteFuture() && delay_ > absl::ZeroDuration()) {
    send_at_ = now + delay_;
    return send_at_;
  }
  send_at_ = absl::InfiniteFuture();  // from now on, until something new waits
  // Reports until the spool has nothing ready; each is bounded, and the server's rate limit
  // answers RESOURCE_EXHAUSTED when a device back from a long outage sends too fast.
  while (true) {
    std::vector<v1::TelemetryWindow> batch = telemetry_.Ready(kReportWindows, kReportBytes);
    const int64_t dropped = spool.dropped();
    if (batch.empty() && dropped == 0) return absl::InfiniteFuture();
    std::vector<std::string> unsendable;
    std::erase_if(batch, [&](const v1::TelemetryWindow& w) {
      if (static_cast<int64_t>(w.ByteSizeLong()) <= kMaxWindowBytes) return false;
      unsendable.push_back(w.id());
      return true;
    });
    if (!unsendable.empty()) {
      Log(LogLevel::kWarning, "telemetry windows too large to send, dropped",
          {{"windows", static_cast<int64_t>(unsendable.size())}, {"first", unsendable[0]}});
      if (absl::Status s = spool.Discard(unsendable); !s.ok()) {
        Log(LogLevel::kWarning, "could not drop telemetry windows", {{"error", s.ToString()}});
        retry_at_ = now + Backoff();
        return retry_at_;
      }
      continue;
    }
    if (!SendBatch(batch, dropped)) return retry_at_;
    // A short batch was all the spool had ready.
    if (batch.size() < static_cast<size_t>(kReportWindows)) return absl::InfiniteFuture();
  }
}

bool TelemetrySender::SendBatch(const std::vector<v1::TelemetryWindow>& batch, int64_t dropped) {
  v1::ReportTelemetryRequest request;
  request.set_format(kTelemetryFormat);
  for (const v1::TelemetryWindow& w : batch) *request.add_windows() = w;
  request.set_dropped_windows(dropped);
  v1::ReportTelemetryResponse response;
  absl::Status status =
      FromGrpc(v1::DeviceService::NewStub(channel_())
                   ->ReportTelemetry(CallContext(absl::Seconds(10)).get(), request, &response));
  std::vector<std::string> done(response.stored().begin(), response.stored().end());
  for (const auto& refused : response.refused()) {
    // Sending it again cannot help: the server will never store it. Said once, loudly.
    Log(LogLevel::kWarning, "server refused a telemetry window; deleted",
        {{"window", refused.id()}, {"reason", refused.reason()}});
    done.push_back(refused.id());
  }
  if (status.ok()) {
    status = telemetry_.spool().Acknowledge(done, response.dropped_counted());
  }
  if (status.ok() && done.empty() && !batch.empty()) {
    // Neither stored nor refused: a server that answers so would be asked again at once.
    status = absl::InternalError("the server answered for none of the windows sent");
  }
  if (!status.ok()) {
    metrics_.telemetry_reports_failed->Increment();
    ++failures_;
    retry_at_ = options_.clock->Now() + Backoff();
    // The first failure of a run is worth a line; an outage's every retry is not.
    Log(failures_ == 1 ? LogLevel::kWarning : LogLevel::kDebug, "telemetry report failed",
        {{"error", status.ToString()},
         {"windows", static_cast<int64_t>(batch.size())},
         {"retry_in_ms", absl::ToInt64Milliseconds(retry_at_ - options_.clock->Now())}});
    return false;
  }
  if (failures_ > 0) {
    Log(LogLevel::kInfo, "telemetry reports resumed", {{"after_failures", failures_}});
  }
  failures_ = 0;
  Log(LogLevel::kDebug, "telemetry report",
      {{"windows", static_cast<int64_t>(batch.size())},
       {"first", batch.empty() ? std::string() : batch.front().id()},
       {"stored", static_cast<int64_t>(response.stored_size())},
       {"refused", static_cast<int64_t>(response.refused_size())}});
  metrics_.telemetry_reports_ok->Increment();
  metrics_.telemetry_windows_sent->Increment(static_cast<double>(response.stored_size()));
  metrics_.telemetry_windows_refused->Increment(static_cast<double>(response.refused_size()));
  return true;
}

absl::Duration TelemetrySender::Backoff() {
  const int exponent = std::min(failures_, 16);
  const absl::Duration base = std::min(options_.max_backoff, absl::Seconds(1) * (1 << exponent));
  return base * std::uniform_real_distribution<double>(0.5, 1.0)(random_);
}

}  // namespace edgeloop::agent
