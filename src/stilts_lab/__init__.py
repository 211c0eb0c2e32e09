from stilts_lab.devices import register_resolvers

register_resolvers()  # ${cpu_precision:} in conf/trainer/cpu.yaml: resolved wherever a config is composed
