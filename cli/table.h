#pragma once

#include <string>
#include <vector>

namespace edgeloop::cli {

/// A plain text table with columns padded to their widest cell, for `-o table`.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace edgeloop::cli
