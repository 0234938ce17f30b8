typedef int fy_placeholder_channel; /* replaced by the module's owner */
