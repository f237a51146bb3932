#include "store/database.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

absl::Status Transaction::Publish(absl::string_view, absl::string_view) {
  return absl::OkStatus();
}

absl::StatusOr<Rows> Transaction::BulkInsert(absl::string_view table,
                                             const std::vector<std::string>& columns,
                                             const std::vector<std::vector<Value>>& rows,
                                             absl::string_view suffix) {
  // SQLite binds at most 32766 parameters per statement.
  const size_t per_statement = std::max<size_t>(1, 30000 / std::max<size_t>(1, columns.size()));
  Rows out;
  for (size_t first = 0; first < rows.size(); first += per_statement) {
    const size_t last = std::min(rows.size(), first + per_statement);
    std::string sql = absl::StrCat("INSERT INTO ", table, " (", absl::StrJoin(columns, ", "),
                                   ") VALUES ");
    std::vector<Value> params;
    params.reserve((last - first) * columns.size());
    for (size_t r = first; r < last; ++r) {
      absl::StrAppend(&sql, r == first ? "(" : ", (");
      for (size_t c = 0; c < columns.size(); ++c) {
        params.push_back(rows[r][c]);
        absl::StrAppend(&sql, c == 0 ? "$" : ", $", params.size());
      }
      absl::StrAppend(&sql, ")");
    }
    absl::StrAppend(&sql, " ", suffix);
    ASSIGN_OR_RETURN(Rows part, Query(sql, params));
    for (Row& row : part) out.push_back(std::move(row));
  }
  return out;
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
