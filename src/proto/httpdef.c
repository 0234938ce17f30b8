/* HTTP definitions (see httpdef.h). */
#include "httpdef.h"

const char *fy_httpdef_status_reason(int status)
{
#define FY_HTTPDEF_REASON_CASE(code, reason)                                                   \
    case code:                                                                                 \
        return reason;
    switch (status) {
        FY_HTTPDEF_STATUS_LIST(FY_HTTPDEF_REASON_CASE)
    default:
        return "Unknown";
    }
#undef FY_HTTPDEF_REASON_CASE
}
