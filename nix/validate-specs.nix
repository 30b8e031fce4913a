# Runs `globofs validate` on spec files at build time, the way a user checks
# specs in CI. Exposed as the flake's `lib.validateSpecs`:
#
#   checks.x86_64-linux.specs = globofs.lib.validateSpecs {
#     inherit pkgs;
#     specs = ./specs;            # a directory (every *.yaml / *.yml in it),
#   };                            # a single file, or a list of files
#
# The build fails, printing `FILE:LINE:COL: KEY: message` for each problem,
# when any spec is invalid. `validate` reads only the files, so it works in
# the build sandbox.
{
  lib,
  runCommand,
  globofs,
}:

{
  specs,
  name ? "globofs-validate-specs",
}:

let
  isSpec = file: lib.hasSuffix ".yaml" file || lib.hasSuffix ".yml" file;

  fromDirectory =
    dir:
    let
      entries = builtins.readDir dir;
      names = lib.filter (n: entries.${n} != "directory" && isSpec n) (lib.attrNames entries);
    in
    map (n: dir + "/${n}") (lib.sort lib.lessThan names);

  files =
    if builtins.isList specs then
      specs
    else if lib.pathIsDirectory specs then
      fromDirectory specs
    else
      [ specs ];
in
assert lib.assertMsg (files != [ ]) "validateSpecs: no *.yaml or *.yml file in ${toString specs}";
runCommand name
  {
    nativeBuildInputs = [ globofs ];
    preferLocalBuild = true;
  }
  ''
    failed=0
    ${lib.concatMapStrings (file: ''
      if globofs validate ${lib.escapeShellArg "${file}"}; then
        echo "valid: ${baseNameOf (toString file)}" | tee -a "$out"
      else
        echo "INVALID: ${baseNameOf (toString file)}" >&2
        failed=1
      fi
    '') files}
    if [ "$failed" != 0 ]; then
      echo "validateSpecs: some specs are invalid (see above)" >&2
      exit 1
    fi
  ''
