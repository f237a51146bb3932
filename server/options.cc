#include "server/options.h"

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace edgeloop::server {
namespace {

using Setter = std::function<bool(ServerOptions&, const std::string&)>;

Setter String(std::string ServerOptions::*field) {
  return [field](ServerOptions& o, const std::string& v) {
    o.*field = v;
    return true;
  };
}
template <typename T>
Setter Number(T ServerOptions::*field) {
  return [field](ServerOptions& o, const std::string& v) {
    T n{};
    if (!absl::SimpleAtoi(v, &n) || n < 0) return false;
    o.*field = n;
    return true;
  };
}

const std::map<std::string, Setter>& Flags() {
  static const auto* flags = new std::map<std::string, Setter>{
      {"data-dir", String(&ServerOptions::data_dir)},
      {"db", String(&ServerOptions::db)},
      {"blobs", String(&ServerOptions::blobs)},
      {"http-listen", String(&ServerOptions::http_listen)},
      {"grpc-listen", String(&ServerOptions::grpc_listen)},
      {"device-listen", String(&ServerOptions::device_listen)},
      {"device-hostnames", String(&ServerOptions::device_hostnames)},
      {"sync-interval-seconds", Number(&ServerOptions::sync_interval_seconds)},
      {"sync-capacity-per-second", Number(&ServerOptions::sync_capacity_per_second)},
      {"device-cert-days", Number(&ServerOptions::device_cert_days)},
      {"offline-after-seconds", Number(&ServerOptions::offline_after_seconds)},
      {"max-upload-bytes", Number(&ServerOptions::max_upload_bytes)},
      {"max-json-body-bytes", Number(&ServerOptions::max_json_body_bytes)},
      {"http-threads", Number(&ServerOptions::http_threads)},
      {"db-pool-size", Number(&ServerOptions::db_pool_size)},
      {"log-level", String(&ServerOptions::log_level)},
      {"shutdown-grace-seconds", Number(&ServerOptions::shutdown_grace_seconds)},
  };
  return *flags;
}

std::string EnvName(const std::string& flag) {
  return absl::StrCat("EDGELOOP_", absl::AsciiStrToUpper(absl::StrReplaceAll(flag, {{"-", "_"}})));
}

}  // namespace

std::string ServerUsage() {
  return R"(usage: edgeloop-server [flags]

  --data-dir DIR            state directory (default ./var)
  --db URL                  sqlite:///abs/path.db (default <data-dir>/edgeloop.db)
                            or postgresql://user@host:port/db
  --blobs URL               file:///abs/dir (default <data-dir>/blobs) or postgresql
  --http-listen HOST:PORT   REST, /metrics, /healthz, /readyz (default 127.0.0.1:8080; 0 = any free port)
  --grpc-listen HOST:PORT   operator gRPC (default 127.0.0.1:9090)
  --device-listen HOST:PORT device gRPC over TLS, for agents (default 0.0.0.0:7443)
  --device-hostnames LIST   names/addresses agents dial, put in the TLS certificate
                            (default localhost,127.0.0.1)
  --sync-interval-seconds N base interval between device syncs (default 30; jittered,
                            longer under load)
  --sync-capacity-per-second N  syncs/s above which intervals stretch (default 500)
  --device-cert-days N      validity of device certificates (default 30; agents renew)
  --offline-after-seconds N a device unseen this long is offline (default 90)
  --max-upload-bytes N      largest blob accepted (default 2 GiB)
  --max-json-body-bytes N   largest JSON request body (default 4 MiB)
  --http-threads N          REST worker threads (default 8)
  --db-pool-size N          database connections (default 16)
  --log-level LEVEL         debug|info|warning|error (default info)
  --shutdown-grace-seconds N  time in-flight requests get on SIGTERM (default 20)

Every flag can be set as EDGELOOP_<FLAG> (e.g. EDGELOOP_DATA_DIR); flags win.
The admin token is EDGELOOP_ADMIN_TOKEN, or is written to <data-dir>/admin.token on first start.
Chosen ports are written to <data-dir>/ports.json.
)";
}

absl::StatusOr<ServerOptions> ParseServerOptions(const std::vector<std::string>& args, bool* help) {
  ServerOptions options;
  *help = false;
  for (const auto& [flag, set] : Flags()) {
    if (const char* env = std::getenv(EnvName(flag).c_str()); env != nullptr && *env != '\0') {
      if (!set(options, env))
        return absl::InvalidArgumentError(absl::StrCat("bad value for ", EnvName(flag)));
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return options;
    }
    if (!absl::StartsWith(arg, "--"))
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
    std::string name = arg.substr(2), value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
    auto it = Flags().find(name);
    if (it == Flags().end())
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    if (!it->second(options, value)) {
      return absl::InvalidArgumentError(absl::StrCat("bad value \"", value, "\" for --", name));
    }
  }
  std::error_code ec;
  std::filesystem::path data_dir = std::filesystem::absolute(options.data_dir, ec);
  options.data_dir = data_dir.lexically_normal().string();
  if (options.data_dir.size() > 1 && options.data_dir.back() == '/') options.data_dir.pop_back();
  if (options.db.empty()) options.db = absl::StrCat("sqlite://", options.data_dir, "/edgeloop.db");
  if (options.blobs.empty()) options.blobs = absl::StrCat("file://", options.data_dir, "/blobs");
  return options;
}

}  // namespace edgeloop::server
