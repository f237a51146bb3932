#pragma once

#include <memory>
#include <string>

#include "store/blob_store.h"

namespace edgeloop::store {

/// Blobs in the database as 1 MiB chunks, so several replicas share them without a shared
/// volume. Uploads stage in a local file and are inserted in one transaction at Commit: the
/// `blobs` row that makes a blob visible is written in the same transaction as its chunks.
absl::StatusOr<std::unique_ptr<BlobStore>> NewDatabaseBlobStore(Database* db,
                                                                const std::string& staging_dir);

}  // namespace edgeloop::store
