#include "protocol/error_code.hpp"

namespace tunnel::protocol {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNoError:
      return "NO_ERROR";
    case ErrorCode::kProtocolError:
      return "PROTOCOL_ERROR";
    case ErrorCode::kInternalError:
      return "INTERNAL_ERROR";
    case ErrorCode::kFlowControlError:
      return "FLOW_CONTROL_ERROR";
    case ErrorCode::kStreamClosed:
      return "STREAM_CLOSED";
    case ErrorCode::kFrameTooLarge:
      return "FRAME_TOO_LARGE";
    case ErrorCode::kRefused:
      return "REFUSED";
    case ErrorCode::kCancel:
      return "CANCEL";
    case ErrorCode::kLocalUnreachable:
      return "LOCAL_UNREACHABLE";
    case ErrorCode::kTimeout:
      return "TIMEOUT";
    case ErrorCode::kAuthFailed:
      return "AUTH_FAILED";
    case ErrorCode::kGoingAway:
      return "GOING_AWAY";
    case ErrorCode::kLocalError:
      return "LOCAL_ERROR";
  }
  return "UNKNOWN";
}

}  // namespace tunnel::protocol
