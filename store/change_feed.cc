#include "store/change_feed.h"

#include <atomic>
#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"

namespace edgeloop::store {
namespace {

class PostgresChangeFeed final : public ChangeFeed {
 public:
  PostgresChangeFeed(std::string url, std::string channel, Listener listener)
      : url_(std::move(url)), channel_(std::move(channel)), listener_(std::move(listener)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~PostgresChangeFeed() override {
    stop_ = true;
    thread_.join();
  }

 private:
  // libpqxx calls this from await_notification, on the feed's thread.
  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& conn, const std::string& channel, const Listener& listener)
        : pqxx::notification_receiver(conn, channel), listener_(listener) {}
    void operator()(const std::string& payload, int) override { listener_(payload); }

   private:
    const Listener& listener_;
  };

  void Run() {
    bool logged = false;
    while (!stop_) {
      try {
        pqxx::connection conn(url_);
        Receiver receiver(conn, channel_, listener_);
        conn.await_notification(0, 0);  // sends the LISTEN before anything is missed
        if (logged) Log(LogLevel::kInfo, "change feed connected again", {{"channel", channel_}});
        logged = false;
        listener_("");  // whatever changed while the feed was not listening
        while (!stop_) conn.await_notification(1, 0);
      } catch (const std::exception& e) {
        if (!logged) {
          Log(LogLevel::kWarning, "change feed lost its connection; retrying each second",
              {{"channel", channel_}, {"error", e.what()}});
          logged = true;
        }
        // Until then the watch streams' own poll (WatchHubOptions) still finds changes.
        for (int k = 0; k < 10 && !stop_; ++k) absl::SleepFor(absl::Milliseconds(100));
      }
    }
  }

  const std::string url_, channel_;
  const Listener listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class SilentChangeFeed final : public ChangeFeed {};

}  // namespace

absl::StatusOr<std::unique_ptr<ChangeFeed>> ChangeFeed::Listen(const std::string& url,
                                                               const std::string& channel,
                                                               Listener listener) {
  if (absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://")) {
    return std::make_unique<PostgresChangeFeed>(url, channel, std::move(listener));
  }
  if (absl::StartsWith(url, "sqlite://")) return std::make_unique<SilentChangeFeed>();
  return absl::InvalidArgumentError(absl::StrCat("unsupported database URL \"", url, "\""));
}

}  // namespace edgeloop::store
