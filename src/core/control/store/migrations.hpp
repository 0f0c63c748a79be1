// The schema's versions: numbered SQL steps, forward-only, in code. Step N takes a database at
// version N-1 to version N; a step is never edited once released (add a new one instead).
// The text is shared by both backends: {ID} and {BIGINT} are replaced per dialect.
#pragma once

#include <span>
#include <string>

#include "core/control/store/connection.hpp"

namespace tunnel::core::store {

struct Migration {
  int version;
  const char* what;
  const char* sql;
};

std::span<const Migration> migrations();
std::string migration_sql(const Migration& m, Dialect dialect);

}  // namespace tunnel::core::store
