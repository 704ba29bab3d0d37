/* Fault injection for tests (see fault.h). */
#include "agent/core/fault.h"

#ifdef OP_FAULTS
#include <stdlib.h>
#include <string.h>

bool op_fault(const char *point, const char *name)
{
	const char *s = getenv("OUTPOST_FAULTS");
	size_t pl = strlen(point), nl = strlen(name);
	while (s && *s) {
		size_t len = strcspn(s, ",");
		if (len == pl + 1 + nl && memcmp(s, point, pl) == 0 && s[pl] == '=' &&
		    memcmp(s + pl + 1, name, nl) == 0)
			return true;
		s += len;
		s += *s == ',';
	}
	return false;
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int op_fault_none;
#endif
