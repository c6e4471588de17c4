/* Waits forever, whatever its name and arguments (a stand-in for `java -jar app.jar`). */
#include <unistd.h>
int main(void) {
  for (;;) pause();
}
