#pragma once

#include <memory>
#include <string>

#include "store/blob_store.h"

namespace edgeloop::store {

/// Blobs as files: `<root>/sha256/<2 hex>/<64 hex>`, staged under `<root>/staging/` and
/// published with rename, so a blob file is either absent or complete.
absl::StatusOr<std::unique_ptr<BlobStore>> NewFileBlobStore(const std::string& root);

}  // namespace edgeloop::store
