#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace edgeloop::store {

/// A bounded pool of database connections shared by the SQLite and PostgreSQL drivers.
/// Connections are opened lazily up to `max_size`; Acquire waits while all are leased, up to
/// `acquire_timeout`, then answers UNAVAILABLE (503): a server whose database is saturated
/// says so instead of piling up requests that hang.
/// A lease whose connection broke is discarded instead of returned, so the next Acquire
/// opens a fresh one. Thread-safe.
template <typename Conn>
class ConnectionPool {
 public:
  using Factory = std::function<absl::StatusOr<std::unique_ptr<Conn>>()>;

  class Lease {
   public:
    Lease() = default;
    Lease(ConnectionPool* pool, std::unique_ptr<Conn> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&& o) noexcept : pool_(o.pool_), conn_(std::move(o.conn_)) { o.pool_ = nullptr; }
    Lease& operator=(Lease&& o) noexcept {
      Release();
      pool_ = o.pool_;
      conn_ = std::move(o.conn_);
      o.pool_ = nullptr;
      return *this;
    }
    ~Lease() { Release(); }
    Conn* operator->() const { return conn_.get(); }
    Conn& operator*() const { return *conn_; }
    /// Drops the connection instead of returning it to the pool.
    void Discard() {
      if (pool_ != nullptr) pool_->Return(nullptr);
      pool_ = nullptr;
      conn_.reset();
    }

   private:
    void Release() {
      if (pool_ != nullptr) pool_->Return(std::move(conn_));
      pool_ = nullptr;
    }
    ConnectionPool* pool_ = nullptr;
    std::unique_ptr<Conn> conn_;
  };

  ConnectionPool(int max_size, absl::Duration acquire_timeout, Factory factory)
      : max_size_(max_size), acquire_timeout_(acquire_timeout), factory_(std::move(factory)) {}

  absl::StatusOr<Lease> Acquire() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, absl::ToChronoMilliseconds(acquire_timeout_),
                      [&] { return !idle_.empty() || open_ < max_size_; })) {
      return absl::UnavailableError(absl::StrCat(
          "the database is busy: all ", max_size_, " connections stayed in use for ",
          absl::FormatDuration(acquire_timeout_), " (retry later, or raise --db-pool-size)"));
    }
    if (!idle_.empty()) {
      std::unique_ptr<Conn> conn = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(conn));
    }
    ++open_;
    lock.unlock();
    absl::StatusOr<std::unique_ptr<Conn>> conn = factory_();
    if (!conn.ok()) {
      Return(nullptr);
      return conn.status();
    }
    return Lease(this, std::move(*conn));
  }

 private:
  void Return(std::unique_ptr<Conn> conn) {
    {
      std::lock_guard lock(mu_);
      if (conn) {
        idle_.push_back(std::move(conn));
      } else {
        --open_;
      }
    }
    cv_.notify_one();
  }

  const int max_size_;
  const absl::Duration acquire_timeout_;
  Factory factory_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  int open_ = 0;
};

}  // namespace edgeloop::store
