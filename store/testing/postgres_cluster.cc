#include "store/testing/postgres_cluster.h"

#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/status.h"

namespace edgeloop::store::testing {
namespace fs = std::filesystem;
namespace {

std::string FindPostgresBin() {
  std::error_code ec;
  std::string best;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    std::string bin = entry.path().string() + "/bin";
    if (fs::exists(bin + "/pg_ctl") && bin > best) best = bin;
  }
  return best;
}

// Runs a shell command, as the postgres user when we are root.
absl::Status Run(const std::string& command) {
  std::string full = ::geteuid() == 0 ? absl::StrCat("runuser -u postgres -- ", command) : command;
  int rc = std::system((full + " >/dev/null 2>&1").c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("command failed (", rc, "): ", full));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresCluster>> PostgresCluster::Start() {
  std::string bin = FindPostgresBin();
  if (bin.empty())
    return absl::FailedPreconditionError(
        "PostgreSQL server binaries not found; run scripts/bootstrap");
  std::string dir = absl::StrCat("/tmp/edgeloop-pg-", RandomHex(6));
  fs::create_directories(dir);
  if (::geteuid() == 0) {
    struct passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr)
      return absl::FailedPreconditionError("no postgres user to run PostgreSQL as");
    if (::chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0)
      return absl::InternalError("chown test cluster dir");
  }
  auto cluster = std::unique_ptr<PostgresCluster>(new PostgresCluster(bin, dir));
  RETURN_IF_ERROR(Run(
      absl::StrCat(bin, "/initdb -D ", dir, "/data -U postgres --auth=trust -E UTF8 --no-sync")));
  RETURN_IF_ERROR(cluster->Restart());
  return cluster;
}

absl::Status PostgresCluster::Restart() {
  // fsync=off trades durability across an OS crash for speed; it keeps every commit across a
  // server crash (pg_ctl stop -m immediate), which the fault tests rely on, because writes
  // still reach the OS. synchronous_commit=off would not: it loses the last commits.
  return Run(absl::StrCat(bin_, "/pg_ctl start -w -t 60 -D ", dir_, "/data -l ", dir_,
                          "/server.log -o \"-k ", dir_,
                          " -c listen_addresses='' -c fsync=off -c max_connections=200\""));
}

absl::Status PostgresCluster::Stop() {
  return Run(absl::StrCat(bin_, "/pg_ctl stop -w -m immediate -D ", dir_, "/data"));
}

PostgresCluster::~PostgresCluster() {
  (void)Stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

absl::StatusOr<std::string> PostgresCluster::CreateDatabase(const std::string& name) {
  RETURN_IF_ERROR(Run(absl::StrCat(bin_, "/createdb -h ", dir_, " -U postgres ", name)));
  return absl::StrCat("postgresql://postgres@/", name, "?host=", dir_);
}

absl::StatusOr<PostgresCluster*> SharedPostgresCluster() {
  static std::mutex mu;
  static std::unique_ptr<PostgresCluster> cluster;
  static absl::Status failure;
  std::lock_guard lock(mu);
  if (!cluster && failure.ok()) {
    auto started = PostgresCluster::Start();
    if (started.ok()) {
      cluster = std::move(*started);
    } else {
      failure = started.status();
    }
  }
  if (!failure.ok()) return failure;
  return cluster.get();
}

absl::StatusOr<std::string> NewTestDatabase() {
  static std::atomic<int> counter{0};
  ASSIGN_OR_RETURN(PostgresCluster * cluster, SharedPostgresCluster());
  return cluster->CreateDatabase(absl::StrCat("t", ::getpid(), "_", counter++));
}

}  // namespace edgeloop::store::testing
