#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "store/blob_store.h"
#include "store/change_feed.h"
#include "store/database.h"
#include "store/group_commit.h"
#include "store/migrations.h"
#include "store/testing/postgres_cluster.h"

namespace edgeloop::store {
namespace {
namespace fs = std::filesystem;

// The store's own schema; the components' tables are theirs to test.
const std::vector<Migration>& Schema() {
  static const auto* schema = new std::vector<Migration>(*MergeMigrations({&BlobMigrations()}));
  return *schema;
}

std::string TempDir() {
  std::string dir = absl::StrCat(::testing::TempDir(), "edgeloop-store-", RandomHex(6));
  fs::create_directories(dir);
  return dir;
}

/// The same suite runs on the embedded SQLite database and on a real PostgreSQL cluster.
class DatabaseTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    std::string url;
    if (GetParam() == "sqlite") {
      url = absl::StrCat("sqlite://", dir_, "/test.db");
    } else {
      auto pg = testing::NewTestDatabase();
      ASSERT_TRUE(pg.ok()) << pg.status();
      url = *pg;
    }
    url_ = url;
    auto db = Database::Open({.url = url, .pool_size = 8});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    auto version = ApplyMigrations(*db_, Schema());
    ASSERT_TRUE(version.ok()) << version.status();
    ASSERT_EQ(*version, Schema().back().version);
  }
  void TearDown() override {
    db_.reset();
    fs::remove_all(dir_);
  }

  std::string dir_;
  std::string url_;
  std::unique_ptr<Database> db_;
};

TEST_P(DatabaseTest, MigrationsAreIdempotentAndConcurrentSafe) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto v = ApplyMigrations(*db_, Schema());
      if (!v.ok() || *v != Schema().back().version) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  auto rows = db_->Query("SELECT COUNT(*) AS n FROM schema_migrations", {});
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ((*rows)[0].Int("n"), static_cast<int64_t>(Schema().size()));
  EXPECT_EQ(*CurrentSchemaVersion(*db_), Schema().back().version);
}

TEST_P(DatabaseTest, ValuesRoundTripThroughParameters) {
  // Create the table with the dialect's binary type.
  std::string bytes_type = db_->dialect() == Dialect::kSqlite ? "BLOB" : "BYTEA";
  ASSERT_TRUE(RunInTransaction(*db_, [&](Transaction& tx) {
                return tx.ExecuteScript(
                    "CREATE TABLE roundtrip (i BIGINT, d DOUBLE PRECISION, s TEXT, b " +
                    bytes_type + ", n TEXT)");
              }).ok());
  std::string binary("\x00\x01\xff'\"\\x", 7);
  std::string tricky = "it's \"quoted\"; DROP TABLE roundtrip; --";
  ASSERT_TRUE(RunInTransaction(*db_, [&](Transaction& tx) {
                return tx
                    .Execute(
                        "INSERT INTO roundtrip (i, d, s, b, n) VALUES ($1, $2, $3, $4, $5)",
                        {int64_t{-9007199254740993}, 2.5, tricky, Bytes{binary}, std::monostate{}})
                    .status();
              }).ok());
  auto rows = db_->Query("SELECT i, d, s, b, n FROM roundtrip WHERE s = $1", {tricky});
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  const Row& r = (*rows)[0];
  EXPECT_EQ(r.Int("i"), -9007199254740993);
  EXPECT_DOUBLE_EQ(r.Real("d"), 2.5);
  EXPECT_EQ(r.Text("s"), tricky);
  EXPECT_EQ(r.Blob("b"), binary);
  EXPECT_TRUE(r.IsNull("n"));
}

TEST_P(DatabaseTest, BulkInsertKeepsEveryValueAndSkipsConflicts) {
  const std::string bytes_type = db_->dialect() == Dialect::kSqlite ? "BLOB" : "BYTEA";
  ASSERT_TRUE(RunInTransaction(*db_, [&](Transaction& tx) {
                return tx.ExecuteScript(
                    "CREATE TABLE bulk (k BIGINT PRIMARY KEY, s TEXT NOT NULL, "
                    "b " +
                    bytes_type + " NOT NULL)");
              }).ok());
  // Empty strings, tabs, newlines and backslashes are what COPY's text format must escape;
  // an empty string is not NULL.
  const std::string binary("\x00\t\n\\N\xff", 6);
  std::vector<std::vector<Value>> rows;
  for (int64_t k = 0; k < 300; ++k) {
    rows.push_back({k, k % 3 == 0 ? std::string() : absl::StrCat("a\tb\nc\\N ", k), Bytes{binary}});
  }
  for (int round = 0; round < 2; ++round) {  // the second time, every row conflicts
    absl::StatusOr<Rows> inserted;
    ASSERT_TRUE(RunInTransaction(*db_,
                                 [&](Transaction& tx) -> absl::Status {
                                   inserted = tx.BulkInsert("bulk", {"k", "s", "b"}, rows,
                                                            "ON CONFLICT DO NOTHING RETURNING k");
                                   return inserted.status();
                                 })
                    .ok())
        << inserted.status();
    EXPECT_EQ(inserted->size(), round == 0 ? rows.size() : 0u);
  }
  auto read = db_->Query("SELECT k, s, b FROM bulk ORDER BY k", {});
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), rows.size());
  for (const Row& r : *read) {
    const int64_t k = r.Int("k");
    EXPECT_EQ(r.Text("s"), k % 3 == 0 ? "" : absl::StrCat("a\tb\nc\\N ", k));
    EXPECT_EQ(r.Blob("b"), binary);
  }
}

TEST_P(DatabaseTest, UncommittedTransactionRollsBack) {
  {
    auto tx = db_->Begin();
    ASSERT_TRUE(tx.ok()) << tx.status();
    ASSERT_TRUE((*tx)
                    ->Execute("INSERT INTO blobs (digest, size, created_at_ms) VALUES ($1, 1, 1)",
                              {std::string("x")})
                    .ok());
  }
  auto rows = db_->Query("SELECT COUNT(*) AS n FROM blobs", {});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int("n"), 0);
}

TEST_P(DatabaseTest, UniqueViolationIsAlreadyExists) {
  auto insert = [&](Transaction& tx) {
    return tx
        .Execute("INSERT INTO blobs (digest, size, created_at_ms) VALUES ($1, 1, 1)",
                 {std::string("same")})
        .status();
  };
  ASSERT_TRUE(RunInTransaction(*db_, insert).ok());
  EXPECT_EQ(RunInTransaction(*db_, insert).code(), absl::StatusCode::kAlreadyExists);
}

TEST_P(DatabaseTest, ConcurrentTransactionsLoseNoUpdate) {
  constexpr int kThreads = 8, kIncrements = 25;
  ASSERT_TRUE(RunInTransaction(*db_, [](Transaction& tx) {
                return tx.ExecuteScript(
                    "CREATE TABLE counter (id INTEGER PRIMARY KEY, last_sequence BIGINT NOT NULL);"
                    "INSERT INTO counter (id, last_sequence) VALUES (1, 0);");
              }).ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        absl::Status s = RunInTransaction(*db_, [](Transaction& tx) -> absl::Status {
          ASSIGN_OR_RETURN(Rows rows,
                           tx.Query("UPDATE counter SET last_sequence = "
                                    "last_sequence + 1 WHERE id = 1 RETURNING last_sequence"));
          if (rows.size() != 1) return absl::InternalError("no counter row");
          return absl::OkStatus();
        });
        if (!s.ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  auto rows = db_->Query("SELECT last_sequence FROM counter", {});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int("last_sequence"), kThreads * kIncrements);
}

// Many callers' writes share commits; each caller gets its own statement's rows, and a bad
// statement in a group fails only its caller.
TEST_P(DatabaseTest, GroupCommitServesEachCallerItsOwnRows) {
  ASSERT_TRUE(RunInTransaction(*db_, [](Transaction& tx) {
                return tx.ExecuteScript(
                    "CREATE TABLE seen (id TEXT PRIMARY KEY, n BIGINT NOT NULL CHECK (n >= 0));");
              }).ok());
  GroupCommit group(db_.get());
  constexpr int kThreads = 8, kWrites = 40;
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0}, refused{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        const std::string id = absl::StrCat("d", t);
        // Every tenth write breaks the CHECK constraint: it alone fails.
        const int64_t n = i % 10 == 9 ? -1 : i;
        auto rows = group.Run(id,
                              "INSERT INTO seen (id, n) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE "
                              "SET n = excluded.n RETURNING id, n",
                              {id, n});
        if (n < 0) {
          refused += !rows.ok();
          continue;
        }
        if (!rows.ok() || rows->size() != 1 || (*rows)[0].Text("id") != id ||
            (*rows)[0].Int("n") != n) {
          ++wrong;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(refused, kThreads * kWrites / 10);
  auto rows = db_->Query("SELECT COUNT(*) AS c, SUM(n) AS s FROM seen", {});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int("c"), kThreads);
  EXPECT_EQ((*rows)[0].Int("s"), kThreads * (kWrites - 2));  // each ends on its write 38
}

TEST_P(DatabaseTest, SyntaxErrorIsReportedNotThrown) {
  auto rows = db_->Query("SELEC nonsense", {});
  EXPECT_FALSE(rows.ok());
  // The pool recovers: the next statement works.
  EXPECT_TRUE(db_->Ping().ok());
}

// A saturated pool answers UNAVAILABLE (the server's 503) after the acquire timeout instead of
// leaving the caller hanging; once a connection is free, work goes on.
TEST_P(DatabaseTest, ASaturatedPoolAnswersUnavailableInsteadOfHanging) {
  auto small =
      Database::Open({.url = url_, .pool_size = 1, .acquire_timeout = absl::Milliseconds(200)});
  ASSERT_TRUE(small.ok()) << small.status();
  auto held = (*small)->Begin();
  ASSERT_TRUE(held.ok()) << held.status();
  auto waited = (*small)->Query("SELECT 1", {});
  EXPECT_EQ(waited.status().code(), absl::StatusCode::kUnavailable) << waited.status();
  EXPECT_TRUE(absl::StrContains(waited.status().message(), "busy")) << waited.status();
  held->reset();
  EXPECT_TRUE((*small)->Ping().ok());
}

TEST_P(DatabaseTest, ARunawayStatementIsCancelledByTheStatementTimeout) {
  if (GetParam() != "postgres")
    GTEST_SKIP() << "SQLite runs in process; its writers wait on busy_timeout";
  auto db =
      Database::Open({.url = url_, .pool_size = 1, .statement_timeout = absl::Milliseconds(300)});
  ASSERT_TRUE(db.ok()) << db.status();
  auto slow = (*db)->Query("SELECT pg_sleep(30)", {});
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kDeadlineExceeded) << slow.status();
  // The connection is still good for the next caller.
  EXPECT_TRUE((*db)->Ping().ok());
  // Migrations are exempt: they may legitimately run long.
  EXPECT_TRUE(ApplyMigrations(**db, Schema()).ok());
}

// What a committed transaction publishes reaches every feed on the channel, after "" for the
// (re)connection; a rolled-back one publishes nothing. SQLite's feed stays silent.
TEST_P(DatabaseTest, PublishedChangesReachTheFeedWhenTheirTransactionCommits) {
  std::mutex mu;
  std::condition_variable heard_cv;
  std::vector<std::string> heard;
  auto feed = ChangeFeed::Listen(url_, "store_test", [&](absl::string_view payload) {
    std::lock_guard lock(mu);
    heard.emplace_back(payload);
    heard_cv.notify_all();
  });
  ASSERT_TRUE(feed.ok()) << feed.status();
  auto wait_for = [&](size_t n) {
    std::unique_lock lock(mu);
    return heard_cv.wait_for(lock, std::chrono::seconds(20), [&] { return heard.size() >= n; });
  };
  if (GetParam() == "postgres") {
    ASSERT_TRUE(wait_for(1));  // connected: ""
  }
  {
    auto tx = db_->Begin();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE((*tx)->Publish("store_test", "dropped").ok());
  }  // not committed
  ASSERT_TRUE(RunInTransaction(*db_, [](Transaction& tx) {
                return tx.Publish("store_test", "dev-1,dev-2");
              }).ok());
  ASSERT_TRUE(RunInTransaction(*db_, [](Transaction& tx) {
                return tx.Publish("another_channel", "elsewhere");
              }).ok());
  ASSERT_TRUE(RunInTransaction(*db_, [](Transaction& tx) {
                return tx.Publish("store_test", "dev-3");
              }).ok());
  if (GetParam() == "sqlite") {
    std::lock_guard lock(mu);
    EXPECT_TRUE(heard.empty());
    return;
  }
  ASSERT_TRUE(wait_for(3));
  std::lock_guard lock(mu);
  EXPECT_EQ(heard, (std::vector<std::string>{"", "dev-1,dev-2", "dev-3"}));
}

TEST(MergeMigrationsTest, SharedHistoricalStepsRunTogetherAndNewNumbersBelongToOneComponent) {
  const ComponentMigrations a{
      "a",
      {{1, "a1", "CREATE TABLE a (x INTEGER);"}, {5, "a5", "ALTER TABLE a ADD COLUMN y INTEGER;"}}};
  const ComponentMigrations b{
      "b", {{5, "b5", "CREATE TABLE b (x INTEGER);"}, {10, "b10", "CREATE INDEX b_x ON b (x);"}}};
  auto merged = MergeMigrations({&a, &b});
  ASSERT_TRUE(merged.ok()) << merged.status();
  ASSERT_EQ(merged->size(), 3u);
  EXPECT_EQ((*merged)[0].version, 1);
  EXPECT_EQ((*merged)[1].version, 5);
  EXPECT_EQ((*merged)[1].name, "a5+b5");
  EXPECT_EQ((*merged)[1].sql, "ALTER TABLE a ADD COLUMN y INTEGER;CREATE TABLE b (x INTEGER);");
  EXPECT_EQ((*merged)[2].version, 10);

  const ComponentMigrations c{"c", {{10, "c10", "CREATE TABLE c (x INTEGER);"}}};
  auto clash = MergeMigrations({&b, &c});
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(clash.status().message(), "declared by both b and c"))
      << clash.status();
  const ComponentMigrations twice{"t", {{11, "x", ""}, {11, "y", ""}}};
  EXPECT_EQ(MergeMigrations({&twice}).status().code(), absl::StatusCode::kInternal);
}

INSTANTIATE_TEST_SUITE_P(Drivers, DatabaseTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

/// Blob stores: files under a directory (with SQLite) and chunks in PostgreSQL.
class BlobStoreTest : public DatabaseTest {
 protected:
  void SetUp() override {
    DatabaseTest::SetUp();
    if (HasFatalFailure()) return;
    BlobStoreOptions options;
    options.staging_dir = dir_ + "/staging";
    options.database = db_.get();
    options.url = GetParam() == "sqlite" ? absl::StrCat("file://", dir_, "/blobs") : "postgresql";
    auto store = BlobStore::Create(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    DatabaseTest::TearDown();
  }

  // Files left in staging directories (excluding the per-process lock files).
  int StagedFiles() {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.is_regular_file() && e.path().filename().string().rfind("upload-", 0) == 0) ++n;
    }
    return n;
  }

  std::unique_ptr<BlobStore> store_;
};

TEST_P(BlobStoreTest, StreamsCommitsAndReadsBack) {
  std::string data;
  for (int i = 0; i < 3 * 1024 * 1024 + 17; ++i) data.push_back(static_cast<char>(i * 31));
  auto writer = store_->NewWriter(int64_t{1} << 30);
  ASSERT_TRUE(writer.ok());
  for (size_t off = 0; off < data.size(); off += 65536) {
    ASSERT_TRUE((*writer)->Write(absl::string_view(data).substr(off, 65536)).ok());
  }
  std::string expected = DigestFromHex(Sha256Hex(data));
  auto info = (*writer)->Commit(expected);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->digest, expected);
  EXPECT_EQ(info->size, static_cast<int64_t>(data.size()));

  auto stat = store_->Stat(expected);
  ASSERT_TRUE(stat.ok());
  EXPECT_EQ(stat->size, static_cast<int64_t>(data.size()));
  auto reader = store_->Open(expected);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*ReadWholeBlob(**reader), data);
  // Random access across a chunk boundary.
  std::string part;
  ASSERT_TRUE((*reader)->ReadAt((1 << 20) - 5, 10, &part).ok());
  EXPECT_EQ(part, data.substr((1 << 20) - 5, 10));
  EXPECT_EQ(StagedFiles(), 0);
}

TEST_P(BlobStoreTest, SameBytesTwiceKeepOneBlob) {
  for (int i = 0; i < 2; ++i) {
    auto writer = store_->NewWriter(1024);
    ASSERT_TRUE((*writer)->Write("hello").ok());
    auto info = (*writer)->Commit("");
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->digest, DigestFromHex(Sha256Hex("hello")));
  }
  EXPECT_EQ(StagedFiles(), 0);
}

TEST_P(BlobStoreTest, EmptyBlobIsStorable) {
  auto writer = store_->NewWriter(1024);
  auto info = (*writer)->Commit("");
  ASSERT_TRUE(info.ok()) << info.status();
  auto reader = store_->Open(info->digest);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->size(), 0);
}

TEST_P(BlobStoreTest, DigestMismatchStoresNothing) {
  auto writer = store_->NewWriter(1024);
  ASSERT_TRUE((*writer)->Write("actual bytes").ok());
  std::string claimed = DigestFromHex(Sha256Hex("other bytes"));
  auto info = (*writer)->Commit(claimed);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(info.status().message().find("digest mismatch"), std::string::npos);
  writer->reset();
  EXPECT_EQ(store_->Stat(claimed).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Stat(DigestFromHex(Sha256Hex("actual bytes"))).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(StagedFiles(), 0);
}

TEST_P(BlobStoreTest, OversizedUploadIsRefusedAndLeavesNothing) {
  auto writer = store_->NewWriter(10);
  ASSERT_TRUE((*writer)->Write("0123456789").ok());
  absl::Status s = (*writer)->Write("x");
  EXPECT_TRUE(IsPayloadTooLarge(s)) << s;
  EXPECT_EQ(StagedFiles(), 0);
  EXPECT_FALSE((*writer)->Commit("").ok());
}

TEST_P(BlobStoreTest, AbandonedUploadLeavesNothing) {
  {
    auto writer = store_->NewWriter(1024);
    ASSERT_TRUE((*writer)->Write("half an upload").ok());
    EXPECT_EQ(StagedFiles(), 1);
  }
  EXPECT_EQ(StagedFiles(), 0);
  EXPECT_EQ(store_->Stat(DigestFromHex(Sha256Hex("half an upload"))).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(BlobStoreTest, MalformedAndUnknownDigests) {
  EXPECT_EQ(store_->Open("sha256:xyz").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Open("../../etc/passwd").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Open(DigestFromHex(Sha256Hex("never stored"))).status().code(),
            absl::StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Stores, BlobStoreTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

TEST(StagingTest, CrashLeftoversAreSweptAtStart) {
  std::string dir = TempDir();
  // A staging directory with no live owner: what a kill -9 during an upload leaves.
  fs::create_directories(dir + "/blobs/staging/deadbeef");
  { std::ofstream(dir + "/blobs/staging/deadbeef/.lock"); }
  { std::ofstream(dir + "/blobs/staging/deadbeef/upload-1") << "partial"; }
  BlobStoreOptions options;
  options.url = absl::StrCat("file://", dir, "/blobs");
  auto store = BlobStore::Create(options);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE(fs::exists(dir + "/blobs/staging/deadbeef"));
  // A second store on the same directory (another replica) keeps the first one's area.
  auto second = BlobStore::Create(options);
  ASSERT_TRUE(second.ok());
  int areas = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir + "/blobs/staging")) ++areas;
  EXPECT_EQ(areas, 2);
  store->reset();
  second->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace edgeloop::store
