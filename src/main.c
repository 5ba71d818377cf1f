/* main.c: process entry. Everything else, command-line parsing included, is the engine's
 * Lua policy (lua/runbook/cli.lua) run by engine.c. */
#include "engine.h"

int main(int argc, char **argv)
{
	return engine_main(argc, argv);
}
