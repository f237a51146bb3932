#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/api.h"
#include "server/metrics.h"
#include "server/rest/router.h"

namespace edgeloop::server::rest {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks a free one
  int threads = 8;                        // handlers block on the database, so more than cores
  int64_t max_json_body_bytes = 4 << 20;  // JSON bodies; blob uploads have their own limit
  // Deadlines, so that a client that trickles bytes in or reads none cannot hold a connection:
  // the wait for a request and its whole header (keep-alive idle included); a JSON body, whole;
  // each 64 KiB of an upload or download (a floor of ~2 KiB/s for blobs) and each response.
  int idle_timeout_seconds = 60;
  int body_timeout_seconds = 30;
  // Connections served at once; one more is answered 503 and closed.
  int max_connections = 1024;
};

/// HTTP/1.1 server (Boost.Beast, one coroutine per connection, keep-alive) that serves a
/// Router, with a deadline on every read and write and a cap on connections. JSON routes read a bounded body; blob uploads stream into the blob store through
/// a fixed 64 KiB buffer; downloads stream out with Range and ETag support.
class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(const HttpServerOptions& options,
                                                            const Router* router, Api* api,
                                                            ServerMetrics* metrics);
  ~HttpServer();

  /// Binds and starts serving; returns the bound port.
  absl::StatusOr<int> Start();
  /// Stops accepting, lets requests in flight finish (up to `grace`), then closes everything.
  void Shutdown(absl::Duration grace);

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeloop::server::rest
