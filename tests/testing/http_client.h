#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace edgeloop::tests {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

/// A blocking HTTP/1.1 client on one keep-alive connection to 127.0.0.1:port (Boost.Beast).
/// Reconnects when the server closed the connection. For tests and benchmarks.
class HttpClient {
 public:
  explicit HttpClient(int port);
  ~HttpClient();
  HttpClient(HttpClient&&) noexcept;

  absl::StatusOr<HttpResponse> Request(const std::string& method, const std::string& target,
                                       const std::string& body = "",
                                       const std::map<std::string, std::string>& headers = {});
  absl::StatusOr<HttpResponse> Get(const std::string& target,
                                   const std::map<std::string, std::string>& headers = {}) {
    return Request("GET", target, "", headers);
  }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Sends the headers of a POST announcing `content_length` bytes and then only `partial`
/// bytes of body over a raw socket, leaving the request unfinished. Returns the socket fd
/// (the caller closes it) so a test can kill the server mid-upload.
absl::StatusOr<int> StartPartialUpload(int port, const std::string& target,
                                       const std::string& token, int64_t content_length,
                                       const std::string& partial);

/// Uploads `total_bytes` of a repeating pattern to POST /v1/blobs over a raw socket in 1 MiB
/// writes, never holding the whole body, and returns the raw HTTP response text. Sets
/// `*digest` to the "sha256:…" of what was sent.
absl::StatusOr<std::string> StreamUpload(int port, const std::string& token, int64_t total_bytes,
                                         std::string* digest);

}  // namespace edgeloop::tests
