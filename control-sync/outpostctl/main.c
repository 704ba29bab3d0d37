/* outpostctl: placeholder entry while the engine lands. */
#include <stdio.h>

int main(void)
{
	fputs("outpostctl: not built yet\n", stderr);
	return 2;
}
