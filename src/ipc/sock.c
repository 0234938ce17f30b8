typedef int fy_placeholder_sock; /* replaced by the module's owner */
