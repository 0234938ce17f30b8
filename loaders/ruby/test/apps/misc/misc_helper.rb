# frozen_string_literal: true

# Required by config.ru by its bare name: proves the app root is on $LOAD_PATH.
module MiscHelper
  GREETING = "loaded from the app root\n"
end
