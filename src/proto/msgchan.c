typedef int fy_placeholder_msgchan; /* replaced by the module's owner */
