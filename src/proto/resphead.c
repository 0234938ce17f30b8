typedef int fy_placeholder_resphead; /* replaced by the module's owner */
