#include "store/leader_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace edgeloop::store {
namespace {

// pg_advisory_lock's key: "leader" as a number, unlike the schema migrations' lock
// (store/migrations.cc), so that a replica starting up is not held by the leader.
constexpr int64_t kLeaderKey = 0x6c6561646572;  // "leader"

class PostgresLeaderLock final : public LeaderLock {
 public:
  explicit PostgresLeaderLock(std::string url) : url_(std::move(url)) {}

  bool TryHold() override {
    try {
      if (conn_ == nullptr) {
        conn_ = std::make_unique<pqxx::connection>(url_);
        // A renewal that cannot finish in time counts as lost; the server side drops the
        // session (and the lock) of a host that vanished within about ten seconds.
        conn_->set_variable("statement_timeout", "3000");
        conn_->set_variable("tcp_keepalives_idle", "5");
        conn_->set_variable("tcp_keepalives_interval", "2");
        conn_->set_variable("tcp_keepalives_count", "2");
      }
      pqxx::nontransaction tx(*conn_);
      if (held_) {
        tx.exec("SELECT 1");  // the lease: the session, and so the lock, is still ours
        return true;
      }
      pqxx::result r = tx.exec_params("SELECT pg_try_advisory_lock($1)", kLeaderKey);
      held_ = r[0][0].as<bool>();
      return held_;
    } catch (const std::exception& e) {
      if (held_) Log(LogLevel::kWarning, "leader lease lost", {{"error", e.what()}});
      held_ = false;
      conn_.reset();  // closing the session frees the lock if PostgreSQL still had it
      return false;
    }
  }
  bool shared() const override { return true; }

 private:
  std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
  bool held_ = false;
};

class SqliteNodeLock final : public LeaderLock {
 public:
  explicit SqliteNodeLock(int fd) : fd_(fd) {}
  ~SqliteNodeLock() override { ::close(fd_); }
  bool TryHold() override { return true; }
  bool shared() const override { return false; }

 private:
  int fd_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LeaderLock>> LeaderLock::Create(const std::string& url) {
  if (absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://")) {
    return std::make_unique<PostgresLeaderLock>(url);
  }
  if (!absl::StartsWith(url, "sqlite://")) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported database URL \"", url, "\""));
  }
  const std::string path = url.substr(absl::string_view("sqlite://").size()) + ".server-lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "another edgeloop-server is running on this SQLite database (", path,
        " is locked); SQLite serves one node — run several replicas on PostgreSQL (--db "
        "postgresql://...)"));
  }
  return std::make_unique<SqliteNodeLock>(fd);
}

}  // namespace edgeloop::store
