#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace edgeloop::agent {

/// A minimal HTTP/1.1 server for Prometheus to scrape the agent: answers GET /metrics with
/// `render()`, anything else with 404, one connection at a time on one thread. Small on
/// purpose: the agent runs on devices and serves nothing else over HTTP.
class MetricsEndpoint {
 public:
  /// Binds `listen` (HOST:PORT, port 0 = any free port) and starts serving.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& listen, std::function<std::string()> render);
  ~MetricsEndpoint();
  int port() const { return port_; }

 private:
  MetricsEndpoint(int fd, int port, std::function<std::string()> render);
  void Serve();

  int fd_;
  int port_;
  std::function<std::string()> render_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace edgeloop::agent
