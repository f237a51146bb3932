#include "tests/testing/http_client.h"

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace edgeloop::tests {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpClient::Impl {
  int port;
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  absl::Status Connect() {
    stream.emplace(io);
    beast::error_code ec;
    stream->connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)), ec);
    if (ec) return absl::UnavailableError(absl::StrCat("connect: ", ec.message()));
    buffer.clear();
    return absl::OkStatus();
  }
};

HttpClient::HttpClient(int port) : impl_(std::make_unique<Impl>()) { impl_->port = port; }
HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;

absl::StatusOr<HttpResponse> HttpClient::Request(
    const std::string& method, const std::string& target, const std::string& body,
    const std::map<std::string, std::string>& headers) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!impl_->stream) {
      absl::Status s = impl_->Connect();
      if (!s.ok()) return s;
    }
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    if (req.method() == http::verb::unknown) req.method_string(method);  // any token
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    auto te = headers.find("Transfer-Encoding");
    if (te != headers.end() && te->second == "chunked") {
      req.chunked(true);
    } else {
      req.prepare_payload();
    }
    req.keep_alive(true);
    beast::error_code ec;
    http::write(*impl_->stream, req, ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    if (!ec) http::read(*impl_->stream, impl_->buffer, parser, ec);
    if (ec) {
      impl_->stream.reset();
      // A keep-alive connection the server closed in between: retry once on a new one.
      if (attempt == 0 &&
          (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe || ec == asio::error::eof)) {
        continue;
      }
      return absl::UnavailableError(absl::StrCat("http: ", ec.message()));
    }
    auto& res = parser.get();
    HttpResponse out;
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res)
      out.headers[absl::AsciiStrToLower(std::string(field.name_string()))] =
          std::string(field.value());
    out.body = std::move(res.body());
    if (!res.keep_alive()) impl_->stream.reset();
    return out;
  }
  return absl::UnavailableError("http: connection lost");
}

namespace {
beast::error_code ConnectLoopback(tcp::socket& socket, int port) {
  beast::error_code ec;
  socket.connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)), ec);
  return ec;
}
}  // namespace

absl::StatusOr<int> StartPartialUpload(int port, const std::string& target,
                                       const std::string& token, int64_t content_length,
                                       const std::string& partial) {
  asio::io_context io;
  tcp::socket socket(io);
  beast::error_code ec = ConnectLoopback(socket, port);
  if (ec) return absl::UnavailableError(ec.message());
  std::string head =
      absl::StrCat("POST ", target, " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ", token,
                   "\r\nContent-Length: ", content_length, "\r\n\r\n");
  asio::write(socket, asio::buffer(head), ec);
  if (!ec) asio::write(socket, asio::buffer(partial), ec);
  if (ec) return absl::UnavailableError(ec.message());
  return socket.release();
}

absl::StatusOr<std::string> StreamUpload(int port, const std::string& token, int64_t total_bytes,
                                         std::string* digest) {
  asio::io_context io;
  tcp::socket socket(io);
  beast::error_code ec = ConnectLoopback(socket, port);
  if (ec) return absl::UnavailableError(ec.message());
  std::string head =
      absl::StrCat("POST /v1/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ", token,
                   "\r\nContent-Length: ", total_bytes, "\r\nConnection: close\r\n\r\n");
  asio::write(socket, asio::buffer(head), ec);
  std::string chunk(1 << 20, '\0');
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>((i * 7919) >> 3);
  Sha256 hash;
  for (int64_t sent = 0; !ec && sent < total_bytes;) {
    size_t n = static_cast<size_t>(
        std::min<int64_t>(static_cast<int64_t>(chunk.size()), total_bytes - sent));
    hash.Update(absl::string_view(chunk.data(), n));
    asio::write(socket, asio::buffer(chunk.data(), n), ec);
    sent += static_cast<int64_t>(n);
  }
  if (ec) return absl::UnavailableError(ec.message());
  *digest = DigestFromHex(hash.HexDigest());
  std::string response;
  char buf[4096];
  for (;;) {
    size_t n = socket.read_some(asio::buffer(buf), ec);
    response.append(buf, n);
    if (ec) break;
  }
  return response;
}

}  // namespace edgeloop::tests
