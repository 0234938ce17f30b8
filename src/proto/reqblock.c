typedef int fy_placeholder_reqblock; /* replaced by the module's owner */
