#!/usr/bin/env bash
# Debian packages genchain uses: the ones its built-in data sources read (`genchain data sources` lists them)
# and the browser its web-page tests drive:
#   dataset-fashion-mnist  Fashion-MNIST (fashion-mnist)
#   fortunes fortunes-min  English fortune cookies (fortunes)
#   fortunes-zh            Chinese sayings and poems (fortunes-zh)
#   espeak-ng              speech synthesis (speech-digits)
#   asterisk-core-sounds-en-wav  real recorded speech (speech-real)
#   fluidsynth timgm6mb-soundfont  MIDI -> WAV for generated music (a 6 MB General-MIDI soundfont)
#   chromium               the browser the web page's Playwright tests drive (tests/test_web_*.py)
# Installs the missing ones with apt-get when run as root on a Debian-like system; otherwise it says what is
# missing and the command to run. It always exits 0: a machine without these packages still builds and
# tests (the tests that need a package skip), it just lacks those sources.
set -u

packages=(dataset-fashion-mnist fortunes fortunes-min fortunes-zh espeak-ng asterisk-core-sounds-en-wav fluidsynth
          timgm6mb-soundfont chromium)

installed() {
    dpkg -s "$1" 2>/dev/null | grep -q "^Status: install ok installed"
}

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: no apt-get/dpkg here; the built-in sources fashion-mnist, fortunes, fortunes-zh," \
         "speech-digits, speech-real and music rendering need the Debian packages ${packages[*]} (or your system's equivalents)"
    exit 0
fi

missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system-deps: all present (${packages[*]})"
    exit 0
fi

command="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing Debian packages: ${missing[*]}; install them with: sudo $command"
    exit 0
fi

echo "system-deps: installing ${missing[*]}"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive $command; }; then
    echo "system-deps: apt-get failed; the sources that need ${missing[*]} stay unavailable" \
         "(run \`$command\` to retry)"
fi
exit 0
