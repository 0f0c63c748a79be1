// GoogleTest helpers for `Result` and `Status` (common/result.hpp), for test files only.
//
//   EXPECT_TRUE(common::is_ok(registry.claim(...)));          // prints the error when it failed
//   EXPECT_TRUE(common::is_value(registry.claim_port(...), 15432));
//   EXPECT_EQ(common::error_of(registry.claim(...)), "bob.localhost is in use by another account");
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/result.hpp"

namespace tunnel::common {

// Success when `result` holds a value; else a failure that prints its error.
template <typename T>
::testing::AssertionResult is_ok(const Result<T>& result) {
  if (result) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "failed: " << result.error().message;
}

// Success when `result` holds `expected`; else a failure that prints its error or its value.
template <typename T, typename U>
::testing::AssertionResult is_value(const Result<T>& result, const U& expected) {
  if (!result) return ::testing::AssertionFailure() << "failed: " << result.error().message;
  if (result.value() == expected) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "holds " << ::testing::PrintToString(result.value())
                                       << ", expected " << ::testing::PrintToString(expected);
}

// The message of a failed `result`; "" when it succeeded.
template <typename T>
std::string error_of(const Result<T>& result) {
  return result ? std::string() : result.error().message;
}

}  // namespace tunnel::common
