#include "store/blob_store.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "store/file_blob_store.h"
#include "store/postgres_blob_store.h"

namespace edgeloop::store {

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Create(const BlobStoreOptions& options) {
  if (absl::StartsWith(options.url, "file://")) {
    std::string root = options.url.substr(absl::string_view("file://").size());
    if (root.empty() || root[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("blob URL needs an absolute path: ", options.url));
    }
    return NewFileBlobStore(root);
  }
  if (options.url == "postgresql" || options.url == "database") {
    if (options.database == nullptr || options.database->dialect() != Dialect::kPostgres) {
      return absl::InvalidArgumentError("--blobs=postgresql needs --db=postgresql://...");
    }
    return NewDatabaseBlobStore(options.database, options.staging_dir);
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported blob store \"", options.url,
                                                 "\": expected file:///dir or postgresql"));
}

absl::StatusOr<std::string> ReadWholeBlob(BlobReader& reader) {
  std::string out, chunk;
  while (static_cast<int64_t>(out.size()) < reader.size()) {
    RETURN_IF_ERROR(reader.ReadAt(static_cast<int64_t>(out.size()), 1 << 20, &chunk));
    if (chunk.empty()) break;
    out += chunk;
  }
  return out;
}

}  // namespace edgeloop::store
