// <utility> must precede Asio: Boost 1.74's awaitable.hpp uses std::exchange without it.
#include "server/rest/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "server/rest/json.h"

namespace edgeloop::server::rest {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kStreamBufferBytes = 64 * 1024;

struct ByteRange {
  int64_t first = 0;
  int64_t last = -1;  // inclusive
  bool partial = false;
};

// Parses "bytes=a-b", "bytes=a-" and "bytes=-n" (one range; multipart ranges are answered
// with the whole body, which RFC 9110 allows).
absl::StatusOr<ByteRange> ParseRange(absl::string_view header, int64_t size) {
  ByteRange range{0, size - 1, false};
  if (header.empty() || !absl::ConsumePrefix(&header, "bytes=") ||
      header.find(',') != absl::string_view::npos) {
    return range;
  }
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(header, absl::MaxSplits('-', 1));
  int64_t a = 0, b = 0;
  if (parts.first.empty()) {
    if (!absl::SimpleAtoi(parts.second, &b) || b <= 0) return absl::OutOfRangeError("bad range");
    range.first = std::max<int64_t>(0, size - b);
  } else {
    if (!absl::SimpleAtoi(parts.first, &a) || a < 0 || a >= size)
      return absl::OutOfRangeError("bad range");
    range.first = a;
    if (!parts.second.empty()) {
      if (!absl::SimpleAtoi(parts.second, &b) || b < a) return absl::OutOfRangeError("bad range");
      range.last = std::min(b, size - 1);
    }
  }
  range.partial = true;
  return range;
}

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  const Router* router;
  Api* api;
  ServerMetrics* metrics;
  asio::io_context io;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};
  std::atomic<int> connections{0};

  asio::awaitable<void> Accept();
  asio::awaitable<void> Refuse(tcp::socket socket);
  asio::awaitable<void> Session(tcp::socket socket);

  // Writes a complete response with a string body; false when the connection failed.
  asio::awaitable<bool> Write(
      beast::tcp_stream& stream, unsigned version, bool keep_alive, int status,
      const std::string& content_type, std::string body,
      const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    res.set(http::field::server, "edgeloop");
    res.set(http::field::content_type, content_type);
    for (const auto& [k, v] : headers) res.set(k, v);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    beast::error_code ec;
    stream.expires_after(BodyTimeout());
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  std::chrono::seconds BodyTimeout() const {
    return std::chrono::seconds(options.body_timeout_seconds);
  }

  asio::awaitable<bool> WriteError(beast::tcp_stream& stream, unsigned version, bool keep_alive,
                                   const absl::Status& status, int* code) {
    *code = HttpStatusFor(status);
    std::vector<std::pair<std::string, std::string>> headers;
    if (status.code() == absl::StatusCode::kUnauthenticated)
      headers.emplace_back("WWW-Authenticate", "Bearer");
    co_return co_await Write(stream, version, keep_alive, *code, "application/json",
                             ErrorJson(status), headers);
  }

  absl::Status JsonBodyTooLarge() const {
    return PayloadTooLargeError(
        absl::StrCat("request body exceeds ", options.max_json_body_bytes, " bytes"));
  }

  asio::awaitable<bool> MaybeContinue(beast::tcp_stream& stream,
                                      const http::request_parser<http::empty_body>& head) {
    if (!beast::iequals(head.get()[http::field::expect], "100-continue")) co_return true;
    http::response<http::empty_body> res{http::status::continue_, head.get().version()};
    beast::error_code ec;
    stream.expires_after(BodyTimeout());
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  asio::awaitable<bool> Upload(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                               http::request_parser<http::empty_body>& head,
                               const Principal& principal, bool* keep_alive, int* code);
  asio::awaitable<bool> Download(beast::tcp_stream& stream,
                                 const http::request<http::empty_body>& req,
                                 const Principal& principal, const std::string& digest,
                                 bool keep_alive, int* code);
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const HttpServerOptions& options,
                                                               const Router* router, Api* api,
                                                               ServerMetrics* metrics) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->router = router;
  impl->api = api;
  impl->metrics = metrics;
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

absl::StatusOr<int> HttpServer::Start() {
  Impl& s = *impl_;
  size_t colon = s.options.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(s.options.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-listen must be host:port, got \"", s.options.listen, "\""));
  }
  std::string host = s.options.listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  beast::error_code ec;
  auto address = asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  if (ec)
    return absl::InvalidArgumentError(
        absl::StrCat("bad listen address \"", host, "\": ", ec.message()));
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  s.acceptor.emplace(s.io);
  s.acceptor->open(endpoint.protocol(), ec);
  if (!ec) s.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(endpoint, ec);
  if (!ec) s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", s.options.listen, ": ", ec.message()));
  int bound = s.acceptor->local_endpoint().port();
  asio::co_spawn(s.io, s.Accept(), asio::detached);
  for (int i = 0; i < std::max(1, s.options.threads); ++i)
    s.threads.emplace_back([&s] { s.io.run(); });
  return bound;
}

void HttpServer::Shutdown(absl::Duration grace) {
  Impl& s = *impl_;
  if (s.threads.empty()) return;
  s.stopping = true;
  asio::post(s.io, [&s] {
    beast::error_code ec;
    if (s.acceptor) s.acceptor->close(ec);
  });
  absl::Time deadline = absl::Now() + grace;
  while (s.in_flight.load() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  s.io.stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
}

asio::awaitable<void> HttpServer::Impl::Accept() {
  while (!stopping) {
    beast::error_code ec;
    // Each connection gets a strand of its own: the session's coroutine and its stream's
    // timeout handler (which closes the socket) never run at once on two of the io threads.
    tcp::socket socket = co_await acceptor->async_accept(
        asio::make_strand(io), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopping || ec == asio::error::operation_aborted) co_return;
      Log(LogLevel::kWarning, "accept failed", {{"error", ec.message()}});
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    if (connections.load() >= options.max_connections) {
      auto executor = socket.get_executor();
      asio::co_spawn(executor, Refuse(std::move(socket)), asio::detached);
      continue;
    }
    connections.fetch_add(1);
    auto executor = socket.get_executor();
    asio::co_spawn(executor, Session(std::move(socket)), [this](std::exception_ptr) {
      connections.fetch_sub(1);
    });
  }
}

asio::awaitable<void> HttpServer::Impl::Refuse(tcp::socket socket) {
  // Over the cap: a short answer without reading the request, then the connection closes.
  beast::tcp_stream stream(std::move(socket));
  stream.expires_after(std::chrono::seconds(2));
  http::response<http::string_body> res{http::status::service_unavailable, 11};
  res.set(http::field::server, "edgeloop");
  res.set(http::field::content_type, "application/json");
  res.set(http::field::retry_after, "1");
  res.keep_alive(false);
  res.body() = ErrorJson(absl::UnavailableError(
      absl::StrCat("too many connections (", options.max_connections, "); retry")));
  res.prepare_payload();
  beast::error_code ec;
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  // Closing with the client's request still unread would send a reset, and a reset can
  // discard the 503 before the client reads it: end our side, drain theirs until they close
  // (bounded by the 2 s above).
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  char discard[4096];
  while (!ec) {
    co_await stream.async_read_some(asio::buffer(discard),
                                    asio::redirect_error(asio::use_awaitable, ec));
  }
  metrics->ObserveHttp("", "refused", 503, absl::ZeroDuration());
}

asio::awaitable<void> HttpServer::Impl::Session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::empty_body> head;
    head.header_limit(16 * 1024);
    // Each route sets its own limit once it knows the route. (Not boost::none: Beast 1.74
    // compares Content-Length against the optional itself and rejects every body.)
    head.body_limit(std::numeric_limits<std::uint64_t>::max());
    stream.expires_after(std::chrono::seconds(options.idle_timeout_seconds));
    beast::error_code ec;
    co_await http::async_read_header(stream, buffer, head,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
          ec != asio::error::connection_reset && ec != asio::error::eof) {
        int code = 0;
        co_await WriteError(
            stream, 11, false,
            absl::InvalidArgumentError(absl::StrCat("bad HTTP request: ", ec.message())), &code);
      }
      break;
    }
    in_flight.fetch_add(1);
    const absl::Time start = absl::Now();
    const auto& req = head.get();
    const unsigned version = req.version();
    bool keep_alive = req.keep_alive() && !stopping;
    const std::string method(req.method_string());
    const std::string target(req.target());
    const size_t qmark = target.find('?');
    const std::string path = target.substr(0, qmark);
    Router::Match match = router->Find(method, path);
    std::string route_label = match.route ? match.route->pattern : "unmatched";
    int code = 500;
    bool ok = true;
    // A body we will not read leaves the connection unusable for the next request.
    const bool has_body =
        req.has_content_length() ? (req[http::field::content_length] != "0") : req.chunked();

    if (match.route == nullptr) {
      if (has_body) keep_alive = false;
      absl::Status status =
          match.other_method
              ? absl::Status(absl::StatusCode::kUnimplemented,
                             absl::StrCat("method ", method, " not allowed on ", path))
              : absl::NotFoundError(absl::StrCat("no route for ", method, " ", path));
      if (match.other_method) {
        code = 405;
        ok =
            co_await Write(stream, version, keep_alive, 405, "application/json", ErrorJson(status));
      } else {
        ok = co_await WriteError(stream, version, keep_alive, status, &code);
      }
    } else {
      const Route& route = *match.route;
      absl::StatusOr<Principal> principal = Principal{};
      if (route.kind != RouteKind::kPublic) {
        principal = api->tokens().Authenticate(std::string(req[http::field::authorization]));
      }
      if (!principal.ok()) {
        if (has_body) keep_alive = false;
        ok = co_await WriteError(stream, version, keep_alive, principal.status(), &code);
      } else if (route.kind == RouteKind::kBlobUpload) {
        ok = co_await Upload(stream, buffer, head, *principal, &keep_alive, &code);
      } else if (route.kind == RouteKind::kBlobDownload) {
        ok = co_await Download(stream, req, *principal, match.params["digest"], keep_alive, &code);
      } else if (auto length = head.content_length();
                 length && *length > static_cast<uint64_t>(options.max_json_body_bytes)) {
        // Beast checks Content-Length against the limit only while parsing the header, which
        // ran before the route was known; so the declared size is checked here.
        keep_alive = false;
        ok = co_await WriteError(stream, version, false, JsonBodyTooLarge(), &code);
      } else {
        ok = co_await MaybeContinue(stream, head);
        http::request_parser<http::string_body> parser(std::move(head));
        parser.body_limit(static_cast<uint64_t>(options.max_json_body_bytes));
        stream.expires_after(BodyTimeout());  // the whole body, however it trickles in
        if (ok)
          co_await http::async_read(stream, buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
        if (!ok) {
        } else if (ec == http::error::body_limit) {
          keep_alive = false;
          ok = co_await WriteError(stream, version, false, JsonBodyTooLarge(), &code);
        } else if (ec) {
          if (ec == beast::error::timeout) code = 408;
          ok = false;
        } else {
          RestRequest rest;
          rest.principal = &*principal;
          rest.path = std::move(match.params);
          if (qmark != std::string::npos)
            rest.query = ParseQuery(absl::string_view(target).substr(qmark + 1));
          rest.body = std::move(parser.get().body());
          absl::StatusOr<RestResponse> response = route.handler(rest);
          if (response.ok()) {
            code = response->status;
            ok = co_await Write(stream, version, keep_alive, response->status,
                                response->content_type, std::move(response->body));
          } else {
            ok = co_await WriteError(stream, version, keep_alive, response.status(), &code);
          }
        }
      }
    }
    const absl::Duration elapsed = absl::Now() - start;
    metrics->ObserveHttp(method, route_label, code, elapsed);
    // Successes are routine (debug); failures are worth a line at info, server errors a warning.
    Log(code >= 500   ? LogLevel::kWarning
        : code >= 400 ? LogLevel::kInfo
                      : LogLevel::kDebug,
        "http request",
        {{"method", method},
         {"path", path},
         {"route", route_label},
         {"code", code},
         {"duration_ms", absl::ToDoubleMilliseconds(elapsed)}});
    in_flight.fetch_sub(1);
    if (!ok || !keep_alive) break;
  }
  // Half-close, then read and drop what the client still sends (an upload refused midway)
  // for a moment: closing with unread bytes would reset the connection and the client
  // might never read the error response we just sent.
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(std::chrono::seconds(2));
  std::vector<char> sink(kStreamBufferBytes);
  for (size_t drained = 0; !ec && drained < (8u << 20);) {
    drained += co_await stream.async_read_some(asio::buffer(sink),
                                               asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<bool> HttpServer::Impl::Upload(beast::tcp_stream& stream,
                                               beast::flat_buffer& buffer,
                                               http::request_parser<http::empty_body>& head,
                                               const Principal& principal, bool* keep_alive,
                                               int* code) {
  const auto& req = head.get();
  const unsigned version = req.version();
  int64_t declared = -1;
  if (req.has_content_length())
    absl::SimpleAtoi(std::string(req[http::field::content_length]), &declared);
  std::string expected(req["X-Edgeloop-Digest"]);
  std::string target(req.target());
  if (size_t q = target.find('?'); q != std::string::npos) {
    auto query = ParseQuery(absl::string_view(target).substr(q + 1));
    if (query.count("digest")) expected = query["digest"];
  }
  auto writer = api->BeginBlobUpload(principal, declared);
  if (!writer.ok()) {
    *keep_alive = false;  // the body stays unread
    co_return co_await WriteError(stream, version, false, writer.status(), code);
  }
  if (!co_await MaybeContinue(stream, head)) co_return false;
  http::request_parser<http::buffer_body> parser(std::move(head));
  parser.body_limit(
      std::numeric_limits<std::uint64_t>::max());  // the blob writer enforces the limit
  std::vector<char> chunk(kStreamBufferBytes);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    beast::error_code ec;
    stream.expires_after(BodyTimeout());  // per 64 KiB: a slow trickle is cut off
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      if (ec == beast::error::timeout) *code = 408;
      writer->reset();  // client gone or too slow: its bytes are discarded now
      co_return false;
    }
    size_t got = chunk.size() - parser.get().body().size;
    absl::Status written = (*writer)->Write(absl::string_view(chunk.data(), got));
    if (!written.ok()) {
      *keep_alive = false;
      co_return co_await WriteError(stream, version, false, written, code);
    }
  }
  auto blob = api->FinishBlobUpload(**writer, expected);
  if (!blob.ok()) co_return co_await WriteError(stream, version, *keep_alive, blob.status(), code);
  *code = 201;
  co_return co_await Write(stream, version, *keep_alive, 201, "application/json",
                           PrintProtoJson(*blob));
}

asio::awaitable<bool> HttpServer::Impl::Download(beast::tcp_stream& stream,
                                                 const http::request<http::empty_body>& req,
                                                 const Principal& principal,
                                                 const std::string& digest, bool keep_alive,
                                                 int* code) {
  const unsigned version = req.version();
  auto reader = api->OpenBlob(principal, digest);
  if (!reader.ok())
    co_return co_await WriteError(stream, version, keep_alive, reader.status(), code);
  const int64_t size = (*reader)->size();
  const std::string etag = absl::StrCat("\"", digest, "\"");
  if (req[http::field::if_none_match] == etag) {
    *code = 304;
    std::vector<std::pair<std::string, std::string>> headers;
    headers.emplace_back("ETag", etag);
    co_return co_await Write(stream, version, keep_alive, 304, "application/octet-stream", "",
                             headers);
  }
  ByteRange range{0, size - 1, false};
  if (size > 0) {
    auto parsed = ParseRange(std::string(req[http::field::range]), size);
    if (!parsed.ok()) {
      *code = 416;
      std::vector<std::pair<std::string, std::string>> headers;
      headers.emplace_back("Content-Range", absl::StrCat("bytes */", size));
      co_return co_await Write(stream, version, keep_alive, 416, "application/json",
                               ErrorJson(absl::OutOfRangeError("requested range not satisfiable")),
                               headers);
    }
    range = *parsed;
  }
  const int64_t length = size == 0 ? 0 : range.last - range.first + 1;
  http::response<http::buffer_body> res{
      range.partial ? http::status::partial_content : http::status::ok, version};
  res.set(http::field::server, "edgeloop");
  res.set(http::field::content_type, "application/octet-stream");
  res.set(http::field::etag, etag);
  res.set(http::field::accept_ranges, "bytes");
  // Content-addressed, so immutable; but only for who may read it: no shared cache keeps it.
  res.set("Cache-Control", "private, max-age=31536000, immutable");
  if (range.partial)
    res.set(http::field::content_range,
            absl::StrCat("bytes ", range.first, "-", range.last, "/", size));
  res.content_length(static_cast<uint64_t>(length));
  res.keep_alive(keep_alive);
  res.body().data = nullptr;
  res.body().more = length > 0;
  *code = range.partial ? 206 : 200;
  http::response_serializer<http::buffer_body> serializer{res};
  beast::error_code ec;
  stream.expires_after(BodyTimeout());
  co_await http::async_write_header(stream, serializer,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return false;
  std::string chunk;
  int64_t offset = range.first;
  while (offset <= range.last && length > 0) {
    size_t want =
        static_cast<size_t>(std::min<int64_t>(kStreamBufferBytes, range.last + 1 - offset));
    absl::Status read = (*reader)->ReadAt(offset, want, &chunk);
    if (!read.ok() || chunk.empty()) {
      Log(LogLevel::kError, "blob read failed mid-download",
          {{"digest", digest}, {"error", read.ToString()}});
      co_return false;  // headers are out; closing is the only honest signal left
    }
    offset += static_cast<int64_t>(chunk.size());
    res.body().data = chunk.data();
    res.body().size = chunk.size();
    res.body().more = offset <= range.last;
    stream.expires_after(BodyTimeout());  // a client that stops reading is cut off
    co_await http::async_write(stream, serializer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return false;
  }
  if (!serializer.is_done()) {
    res.body().data = nullptr;
    res.body().more = false;
    co_await http::async_write(stream, serializer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
  }
  co_return !ec;
}

}  // namespace edgeloop::server::rest
