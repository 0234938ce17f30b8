typedef int fy_placeholder_instdir; /* replaced by the module's owner */
