#include "store/database.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "store/postgres_database.h"
#include "store/sqlite_database.h"

namespace edgeloop::store {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

const Value& Row::Cell(absl::string_view column) const {
  for (size_t i = 0; i < names_->size(); ++i) {
    if ((*names_)[i] == column) return cells_[i];
  }
  std::fprintf(stderr, "store::Row: the result has no column \"%.*s\"\n",
               static_cast<int>(column.size()), column.data());
  std::abort();
}

bool Row::IsNull(absl::string_view column) const {
  return std::holds_alternative<std::monostate>(Cell(column));
}

int64_t Row::Int(absl::string_view column) const {
  const Value& v = Cell(column);
  if (auto* n = std::get_if<int64_t>(&v)) return *n;
  if (auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  if (auto* s = std::get_if<std::string>(&v)) {
    int64_t out = 0;
    if (absl::SimpleAtoi(*s, &out)) return out;
    // PostgreSQL booleans arrive as "t"/"f".
    return *s == "t" ? 1 : 0;
  }
  return 0;
}

double Row::Real(absl::string_view column) const {
  const Value& v = Cell(column);
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* n = std::get_if<int64_t>(&v)) return static_cast<double>(*n);
  if (auto* s = std::get_if<std::string>(&v)) {
    double out = 0;
    if (absl::SimpleAtod(*s, &out)) return out;
  }
  return 0;
}

std::string Row::Text(absl::string_view column) const {
  const Value& v = Cell(column);
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  if (auto* n = std::get_if<int64_t>(&v)) return std::to_string(*n);
  if (auto* d = std::get_if<double>(&v)) return absl::StrCat(*d);
  if (auto* b = std::get_if<Bytes>(&v)) return b->data;
  return "";
}

std::string Row::Blob(absl::string_view column) const {
  const Value& v = Cell(column);
  if (auto* b = std::get_if<Bytes>(&v)) return b->data;
  if (auto* s = std::get_if<std::string>(&v)) {
    // PostgreSQL returns bytea in text format as "\x" followed by hex.
    if (!absl::StartsWith(*s, "\\x")) return *s;
    std::string out;
    out.reserve((s->size() - 2) / 2);
    for (size_t k = 2; k + 1 < s->size(); k += 2) {
      out.push_back(static_cast<char>(HexValue((*s)[k]) * 16 + HexValue((*s)[k + 1])));
    }
    return out;
  }
  return "";
}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const DatabaseOptions& options) {
  if (absl::StartsWith(options.url, "sqlite://")) return SqliteDatabase::Create(options);
  if (absl::StartsWith(options.url, "postgresql://") ||
      absl::StartsWith(options.url, "postgres://")) {
    return PostgresDatabase::Create(options);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported database URL \"", options.url,
                   "\": expected sqlite:///path.db or postgresql://user@host:port/db"));
}

absl::Status RunInTransaction(Database& db, const std::function<absl::Status(Transaction&)>& body) {
  constexpr int kAttempts = 5;
  absl::Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto tx = db.Begin();
    if (!tx.ok()) return tx.status();
    last = body(**tx);
    if (last.ok()) last = (*tx)->Commit();
    if (last.code() != absl::StatusCode::kAborted) return last;
  }
  return last;
}

}  // namespace edgeloop::store
